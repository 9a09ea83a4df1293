"""The product's agent: a stand-in for an LLM call that answers instantly and predictably."""

from __future__ import annotations

from collections.abc import AsyncIterator

from durable_sessions.agents import Agent, Handoff, Turn


class EchoAgent(Agent):
    """Streams back the customer's last message in two chunks."""

    async def stream(self, turn: Turn) -> AsyncIterator[str | Handoff]:
        yield "You said: "
        yield turn.last_user_message
