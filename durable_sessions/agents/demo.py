"""A demo agent: no network, LLM-like pace, hands off when asked for a person, and calls
two demo tools: an order's status (no approval) and a refund (approved by a person)."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator
from typing import Any

from durable_sessions.agents import (
    Agent,
    AgentOutput,
    Handoff,
    Part,
    Reasoning,
    ToolCall,
    ToolInputDelta,
    Turn,
)
from durable_sessions.agents.tools import tool

HANDOFF_WORDS = re.compile(
    r"\b(human|humans|agent|person|people|operator|someone real|real person|representative)\b",
    re.IGNORECASE,
)

REPLIES = {
    "order": (
        "I can help with your order. Orders usually ship within two business days, and "
        "you get a tracking link by email as soon as the parcel leaves our warehouse. "
        "If you share the order number, I can tell you where it is right now."
    ),
    "refund": (
        "Refunds go back to the original payment method within five to seven business "
        "days after we receive the returned item. You can start a return from your "
        "account page under Orders, then Return an item."
    ),
    "password": (
        "To reset your password, open the login page, choose Forgot password and follow "
        "the link we email you. The link is valid for one hour; if it expired, simply "
        "request a new one."
    ),
}
# The demo's orders: what the tools look up.
ORDERS = {
    "1001": {"item": "Trail running shoes", "status": "shipped", "total": 89.90},
    "1002": {"item": "Rain jacket", "status": "delivered", "total": 129.00},
    "1003": {"item": "Road bike", "status": "processing", "total": 1499.00},
}
# Refunds above this total are for an operator to approve, not the customer.
OPERATOR_REFUND_LIMIT = 500.0
ORDER_NUMBER = re.compile(r"\b(\d{4,8})\b")
ORDER_INPUT = {
    "type": "object",
    "properties": {"order_id": {"type": "string", "pattern": "^[0-9]{4,8}$"}},
    "required": ["order_id"],
    "additionalProperties": False,
}


@tool(input_schema=ORDER_INPUT)
def order_status(order_id: str) -> dict[str, Any]:
    """Look up an order's item and shipping status."""
    order = ORDERS.get(order_id)
    if order is None:
        raise LookupError(f"there is no order {order_id}")
    return {"order_id": order_id, **order}


def _refund_approvers(tool_input: dict[str, Any]) -> str:
    order = ORDERS.get(tool_input.get("order_id", ""), {})
    return "operator" if order.get("total", 0) > OPERATOR_REFUND_LIMIT else "any"


@tool(input_schema=ORDER_INPUT, requires_approval=True, approvers=_refund_approvers)
def refund_order(order_id: str) -> dict[str, Any]:
    """Refund an order in full (a person approves it first)."""
    order = ORDERS.get(order_id)
    if order is None:
        raise LookupError(f"there is no order {order_id}")
    return {"order_id": order_id, "refunded": order["total"], "currency": "EUR"}


GENERIC = (
    "Thanks for your message. Here is what I can tell you: most questions about orders, "
    "refunds and accounts can be solved right here in the chat. Tell me a bit more about "
    "what you need, and I will walk you through it step by step. If you would rather talk "
    "to a person, just say so and I will bring in a colleague."
)


class DemoAgent(Agent):
    """Streams a canned but plausible answer word by word.

    Options: ``tokens_per_second`` (default 30), ``thinking_seconds`` (pause before the
    first token, default 0.6), ``seed`` (makes pacing and wording deterministic),
    ``reply`` (always answer this text; useful in tests), ``repeat`` (repeat the reply
    this many times, for long streams), ``use_tools`` (default True: "where is order
    1001?" looks it up, "refund order 1001" asks for an approval; off with ``reply``).

    It reads steering messages after each sentence: one that arrived ends the planned
    answer there, and the demo goes on with a reply to it (see :meth:`steered_text`).
    """

    tools = [order_status, refund_order]
    supports_steering = True

    def __init__(
        self,
        *,
        tokens_per_second: float = 30.0,
        thinking_seconds: float = 0.6,
        seed: int | None = None,
        reply: str | None = None,
        repeat: int = 1,
        use_tools: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.tokens_per_second = tokens_per_second
        self.thinking_seconds = thinking_seconds
        self.random = random.Random(seed)
        self.reply = reply
        self.repeat = max(1, repeat)
        self.use_tools = use_tools and reply is None

    def answer_for(self, turn: Turn) -> str:
        if self.reply is not None:
            return self.reply
        question = turn.last_user_message.lower()
        for keyword, answer in REPLIES.items():
            if keyword in question:
                return answer
        return GENERIC

    def wants_human(self, turn: Turn) -> bool:
        return not turn.handed_back and bool(HANDOFF_WORDS.search(turn.last_user_message))

    @staticmethod
    def summarize(turn: Turn) -> str:
        asked = [m.content.strip() for m in turn.history if m.role == "user"][-3:]
        lines = [f"- {text[:200]}" for text in asked]
        return "Customer wrote:\n" + "\n".join(lines) if lines else "No messages yet."

    def plan(self, turn: Turn) -> tuple[str, str] | None:
        """The tool this question calls for and the order number, if any."""
        question = turn.last_user_message.lower()
        number = ORDER_NUMBER.search(question)
        if number is None:
            return None
        if "refund" in question:
            return "refund_order", number.group(1)
        if "order" in question:
            return "order_status", number.group(1)
        return None

    @staticmethod
    def after_tool(result: Part) -> str:
        """The answer once a tool call has its outcome."""
        if result.state == "denied":
            return f"Understood, I did not do that ({result.error or 'the request was denied'})."
        if result.state != "done":
            return f"I could not do that: {result.error or result.state}."
        out = result.output or {}
        if result.tool_name == "refund_order":
            return (
                f"Done: order {out.get('order_id')} was refunded, {out.get('refunded')} "
                f"{out.get('currency')} go back to your original payment method."
            )
        return (
            f"Order {out.get('order_id')} ({out.get('item')}) is {out.get('status')}. "
            "Anything else I can help with?"
        )

    @staticmethod
    def steered_text(steering: str) -> str:
        """How the demo goes on after a steering message: it quotes it (so a reader sees
        that it took it in) and answers it, from the canned replies when one fits."""
        lowered = steering.lower()
        answer = next((a for k, a in REPLIES.items() if k in lowered), None)
        quoted = " ".join(steering.split())[:200]
        return f'Change of plan, you said: "{quoted}". ' + (
            answer or "I will take that into account from here."
        )

    async def stream(self, turn: Turn) -> AsyncIterator[AgentOutput]:
        await asyncio.sleep(self.thinking_seconds)
        if turn.steered and turn.reply and turn.reply[-1].type != "tool_call":
            # A step of its own for steering that came after the answer's last sentence.
            text = self.steered_text(turn.steered[-1].content)
            async for chunk in self._steerable(text, turn, lead=" "):
                yield chunk
            return
        if self.use_tools and turn.tool_results:
            async for chunk in self._steerable(self.after_tool(turn.tool_results[-1]), turn):
                yield chunk
            return
        planned = self.plan(turn) if self.use_tools and not self.wants_human(turn) else None
        if planned is not None:
            name, order_id = planned
            thought = f"The customer mentions order {order_id}; I will call {name} for it."
            async for chunk in self._words(thought):
                yield Reasoning(chunk)
            call_id = f"call_{self.random.randrange(16**8):08x}"
            for chunk in ('{"order_id": ', f'"{order_id}"', "}"):
                yield ToolInputDelta(call_id, name, chunk)
            yield ToolCall(name, {"order_id": order_id}, call_id)
            return
        if self.wants_human(turn):
            text = "Of course. I am bringing in a colleague from our team; they will join shortly."
            async for chunk in self._words(text):
                yield chunk
            yield Handoff(reason="customer asked for a person", summary=self.summarize(turn))
            return
        text = " ".join([self.answer_for(turn)] * self.repeat)
        async for chunk in self._steerable(text, turn):
            yield chunk

    async def _steerable(self, text: str, turn: Turn, lead: str = "") -> AsyncIterator[str]:
        """``text`` word by word, reading steering messages after each sentence: a new one
        replaces the rest of ``text`` with :meth:`steered_text` (which is steerable too)."""
        # ``lead``: after a steering message, the space between the parts' sentences.
        while True:
            steering: str | None = None
            words = self._words(text)
            try:
                async for word in words:
                    yield lead + word
                    lead = ""
                    if word.endswith((".", "?", "!")):
                        arrived = await turn.steering()
                        if arrived:
                            steering = arrived[-1].content
                            break
            finally:
                await words.aclose()
            if steering is None:
                return
            text, lead = self.steered_text(steering), " "

    async def _words(self, text: str) -> AsyncIterator[str]:
        delay = 1.0 / self.tokens_per_second if self.tokens_per_second > 0 else 0.0
        for index, word in enumerate(text.split(" ")):
            yield word if index == 0 else " " + word
            if delay:
                # A little jitter, as real models do; seeded for repeatable runs.
                await asyncio.sleep(delay * self.random.uniform(0.5, 1.5))
