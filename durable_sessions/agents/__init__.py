"""The agent interface that host projects implement, and the built-in agents.

An agent turns a conversation's history into a stream: it yields text chunks (``str``),
:class:`Reasoning`, :class:`ToolCall` (and :class:`ToolInputDelta` to stream a call's
input), :class:`Data`, :class:`Source` and, optionally, :class:`Handoff` to ask for a
human. Each call of :meth:`Agent.stream` is one step: when a step called tools, the
runtime executes them (asking for approval where a tool requires it), stores their results
and calls the agent again with them in :attr:`Turn.reply`. Choose an agent with
``DURABLE_SESSIONS["AGENT"]`` (a class path) and ``DURABLE_SESSIONS["AGENT_OPTIONS"]``
(keyword arguments for its constructor). See docs/agents.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from durable_sessions.agents.tools import Tool, ToolContext, tool
from durable_sessions.app_settings import ds_settings


@dataclass(frozen=True)
class Part:
    """One part of a message, as the agent sees it (see docs/agents.md).

    For a tool call: ``state`` is ``done`` (``output`` holds the result), ``error`` or
    ``denied`` (``error`` says why: the tool failed, or a person denied the call, or the
    approval expired), ``cancelled``; ``approved`` calls are executed before the agent
    runs again.
    """

    type: str  # "text", "reasoning", "tool_call", "data" or "source"
    text: str = ""
    state: str = "done"
    tool_name: str = ""
    tool_call_id: str = ""
    input: Any = None
    output: Any = None
    error: str = ""
    data: dict[str, Any] | None = None
    step: int = 0  # the step of the run that wrote it

    @property
    def result(self) -> Any:
        """What a tool call gave back: its output, or ``{"error": ...}``."""
        return self.output if self.state == "done" else {"error": self.error or self.state}


@dataclass(frozen=True)
class HistoryMessage:
    """One message of the transcript, as the agent sees it."""

    role: str  # "user", "assistant", "operator" or "system"
    content: str
    author: str
    state: str = "complete"
    # An assistant reply's parts (empty for other messages: their content is their text).
    parts: tuple[Part, ...] = ()


@dataclass(frozen=True)
class Turn:
    """What an agent is asked to answer."""

    session_id: str
    history: list[HistoryMessage]
    metadata: dict[str, Any] = field(default_factory=dict)
    # True when a human handed the session back: the agent should not hand off at once.
    handed_back: bool = False
    # The reply being written: its parts so far, from earlier steps of this run (tool
    # calls with their results) - empty at the first step.
    reply: tuple[Part, ...] = ()
    # Which step this is (0 first); the runtime stops at MAX_AGENT_STEPS.
    step: int = 0
    # Steering messages the customer sent into this run that it has read before this step,
    # in order; they come after :attr:`reply` in the conversation, not in :attr:`history`.
    steered: tuple[HistoryMessage, ...] = ()
    # Set by the runtime: reads the steering messages that arrived since (see steering()).
    steering_reader: Callable[[], Awaitable[list[HistoryMessage]]] | None = field(
        default=None, repr=False, compare=False
    )

    async def steering(self) -> list[HistoryMessage]:
        """The customer's steering messages that arrived since the run last looked, read
        now (an agent with ``supports_steering`` calls this at its own boundaries, e.g.
        after a sentence). The text written so far ends its part first; the messages are
        read for good (a ``run.steered`` event): continue the answer with them in mind."""
        if self.steering_reader is None:
            return []
        return list(await self.steering_reader())

    @property
    def tool_results(self) -> list[Part]:
        """The tool calls of the reply so far, each with its outcome."""
        return [p for p in self.reply if p.type == "tool_call"]

    @property
    def last_user_message(self) -> str:
        for message in reversed(self.history):
            if message.role == "user":
                return message.content
        return ""


@dataclass(frozen=True)
class Handoff:
    """Yielded by an agent to ask for a human, with a brief for the operator; ``team``
    (a slug) routes the conversation to a team of operators."""

    reason: str
    summary: str = ""
    team: str = ""


@dataclass(frozen=True)
class Reasoning:
    """A chunk of the agent's reasoning (shown collapsed; consecutive chunks form a part)."""

    text: str


@dataclass(frozen=True)
class ToolInputDelta:
    """A chunk of a tool call's input as it streams (JSON text), before its
    :class:`ToolCall`; ``call_id`` ties the chunks and the call together."""

    call_id: str
    name: str
    text: str


@dataclass(frozen=True)
class ToolCall:
    """A call of one of the agent's tools with its complete input (a JSON object).

    ``call_id`` is the model's id of the call, if it has one (required after
    :class:`ToolInputDelta` chunks of the same call)."""

    name: str
    input: dict[str, Any] = field(default_factory=dict)
    call_id: str = ""


@dataclass(frozen=True)
class Data:
    """Typed JSON for the host's own UI (an AI SDK ``data-<name>`` part)."""

    name: str
    data: Any


@dataclass(frozen=True)
class Source:
    """A source the answer cites."""

    url: str
    title: str = ""


AgentOutput = str | Reasoning | ToolInputDelta | ToolCall | Data | Source | Handoff


class AgentError(Exception):
    """The agent could not answer; the reply is marked failed with this message."""


class Agent:
    """Base class: implement :meth:`stream`; declare tools in :attr:`tools`. One instance
    serves one step of a turn."""

    #: The tools this agent may call (see :func:`durable_sessions.agents.tools.tool`).
    tools: list[Tool] = []
    #: Whether the agent reads steering messages (:attr:`Turn.steered`,
    #: :meth:`Turn.steering`); without it, a message sent with ``mode: "steer"`` is queued.
    supports_steering: bool = False

    def __init__(self, **options: Any) -> None:
        self.options = options

    def stream(self, turn: Turn) -> AsyncIterator[AgentOutput]:
        raise NotImplementedError

    def tool_named(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)


__all__ = [
    "Agent",
    "AgentError",
    "AgentOutput",
    "Data",
    "Handoff",
    "HistoryMessage",
    "Part",
    "Reasoning",
    "Source",
    "Tool",
    "ToolCall",
    "ToolContext",
    "ToolInputDelta",
    "Turn",
    "get_agent",
    "tool",
]


def get_agent() -> Agent:
    return ds_settings.AGENT(**ds_settings.AGENT_OPTIONS)
