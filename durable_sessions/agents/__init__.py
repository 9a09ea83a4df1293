"""The agent interface that host projects implement, and the built-in agents.

An agent turns a conversation's history into a stream: it yields text chunks (``str``)
and, optionally, :class:`Handoff` to ask for a human. Choose one with
``DURABLE_SESSIONS["AGENT"]`` (a class path) and ``DURABLE_SESSIONS["AGENT_OPTIONS"]``
(keyword arguments for its constructor). See docs/agents.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from durable_sessions.app_settings import ds_settings


@dataclass(frozen=True)
class HistoryMessage:
    """One message of the transcript, as the agent sees it."""

    role: str  # "user", "assistant", "operator" or "system"
    content: str
    author: str
    state: str = "complete"


@dataclass(frozen=True)
class Turn:
    """What an agent is asked to answer."""

    session_id: str
    history: list[HistoryMessage]
    metadata: dict[str, Any] = field(default_factory=dict)
    # True when a human handed the session back: the agent should not hand off at once.
    handed_back: bool = False

    @property
    def last_user_message(self) -> str:
        for message in reversed(self.history):
            if message.role == "user":
                return message.content
        return ""


@dataclass(frozen=True)
class Handoff:
    """Yielded by an agent to ask for a human, with a brief for the operator."""

    reason: str
    summary: str = ""


class AgentError(Exception):
    """The agent could not answer; the reply is marked failed with this message."""


class Agent:
    """Base class: implement :meth:`stream`. One instance serves one turn."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def stream(self, turn: Turn) -> AsyncIterator[str | Handoff]:
        raise NotImplementedError


def get_agent() -> Agent:
    return ds_settings.AGENT(**ds_settings.AGENT_OPTIONS)
