"""A demo agent: no network, LLM-like pace, hands off when asked for a person."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator
from typing import Any

from durable_sessions.agents import Agent, Handoff, Turn

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
    this many times, for long streams).
    """

    def __init__(
        self,
        *,
        tokens_per_second: float = 30.0,
        thinking_seconds: float = 0.6,
        seed: int | None = None,
        reply: str | None = None,
        repeat: int = 1,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.tokens_per_second = tokens_per_second
        self.thinking_seconds = thinking_seconds
        self.random = random.Random(seed)
        self.reply = reply
        self.repeat = max(1, repeat)

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

    async def stream(self, turn: Turn) -> AsyncIterator[str | Handoff]:
        await asyncio.sleep(self.thinking_seconds)
        if self.wants_human(turn):
            text = "Of course. I am bringing in a colleague from our team; they will join shortly."
            async for chunk in self._words(text):
                yield chunk
            yield Handoff(reason="customer asked for a person", summary=self.summarize(turn))
            return
        text = " ".join([self.answer_for(turn)] * self.repeat)
        async for chunk in self._words(text):
            yield chunk

    async def _words(self, text: str) -> AsyncIterator[str]:
        delay = 1.0 / self.tokens_per_second if self.tokens_per_second > 0 else 0.0
        for index, word in enumerate(text.split(" ")):
            yield word if index == 0 else " " + word
            if delay:
                # A little jitter, as real models do; seeded for repeatable runs.
                await asyncio.sleep(delay * self.random.uniform(0.5, 1.5))
