"""Agents for the tests of interrupted runs: a tool whose every real invocation is counted
in a file, then a long answer streamed word by word."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from durable_sessions.agents import Agent, AgentOutput, ToolCall, Turn
from durable_sessions.agents.tools import tool


def count(path: str | Path) -> int:
    """How many times the tools of this module were really invoked (one line each)."""
    file = Path(path)
    return len(file.read_text().splitlines()) if file.exists() else 0


def _record(log: str, hold: float) -> dict[str, Any]:
    with Path(log).open("a") as out:
        out.write("invoked\n")
    time.sleep(hold)  # a slow side effect: a worker may die while it runs
    return {"recorded": True}


@tool(input_schema={"type": "object"})
def record(log: str, hold: float = 0.0) -> dict[str, Any]:
    """A side effect that must not happen twice for one call."""
    return _record(log, hold)


@tool(input_schema={"type": "object"}, idempotent=True)
def record_again(log: str, hold: float = 0.0) -> dict[str, Any]:
    """The same, declared idempotent: an interrupted call may be repeated."""
    return _record(log, hold)


class ToolThenTextAgent(Agent):
    """Calls one tool (``record``, or ``record_again`` with ``idempotent``), then answers
    ``reply`` at ``tokens_per_second`` (0: at once); ``hold`` is how long the tool takes."""

    tools = [record, record_again]

    def __init__(
        self,
        *,
        log: str,
        reply: str,
        tokens_per_second: float = 0.0,
        hold: float = 0.0,
        idempotent: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.log, self.reply, self.hold = log, reply, hold
        self.tokens_per_second = tokens_per_second
        self.tool = "record_again" if idempotent else "record"

    async def stream(self, turn: Turn) -> AsyncIterator[AgentOutput]:
        if not turn.tool_results:
            yield ToolCall(self.tool, {"log": self.log, "hold": self.hold}, "call_record")
            return
        delay = 1.0 / self.tokens_per_second if self.tokens_per_second > 0 else 0.0
        for index, word in enumerate(self.reply.split(" ")):
            yield word if index == 0 else " " + word
            if delay:
                await asyncio.sleep(delay)


class SlowTextAgent(Agent):
    """Answers ``reply`` word by word; ``variant`` words it differently on each attempt
    (an agent that cannot say its cut text again)."""

    def __init__(
        self, *, reply: str, tokens_per_second: float = 20.0, variant: bool = False, **options: Any
    ) -> None:
        super().__init__(**options)
        self.reply, self.tokens_per_second, self.variant = reply, tokens_per_second, variant

    async def stream(self, turn: Turn) -> AsyncIterator[AgentOutput]:
        text = self.reply
        if self.variant and any(p.type == "text" for p in turn.reply):
            text = "Sorry, let me start again. " + text
        delay = 1.0 / self.tokens_per_second if self.tokens_per_second > 0 else 0.0
        for index, word in enumerate(text.split(" ")):
            yield word if index == 0 else " " + word
            if delay:
                await asyncio.sleep(delay)
