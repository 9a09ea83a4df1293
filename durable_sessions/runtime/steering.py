"""Steering messages inside a run: read at step boundaries, in the order of the log.

The executor reads them before each step and before it would end the reply (then the run
takes one more step with them in context). An agent with ``supports_steering`` may also
ask between its own outputs (:meth:`Turn.steering`, e.g. after a sentence): the request
travels through the step's output queue, so the text the agent yielded before it is
written and its part ended before the ``run.steered`` event, and what it yields after
lands in a new part.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.db.models import Subquery

from durable_sessions.agents import HistoryMessage
from durable_sessions.errors import ServiceError
from durable_sessions.models import AgentRun, Message
from durable_sessions.runtime.reply import ReplyWriter
from durable_sessions.service import steering
from durable_sessions.service.transient import retrying

db = database_sync_to_async


@dataclass
class SteerRequest:
    """An agent's request for new steering messages, answered by the step's consumer."""

    answer: asyncio.Future[list[HistoryMessage]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def supported(agent: object) -> bool:
    """Whether ``agent`` reads steering messages (any object with ``stream`` may be one)."""
    return bool(getattr(agent, "supports_steering", False))


def history_message(message: Message) -> HistoryMessage:
    """A stored message as the agent reads it."""
    return HistoryMessage(message.role, message.content, message.author.display_name, message.state)


def has_unread(run_id: int) -> bool:
    """Whether steering messages wait for ``run_id`` (one indexed query, no lock)."""
    read = AgentRun.objects.filter(pk=run_id).values("steered_seq")[:1]
    return Message.objects.filter(steer_run_id=run_id, seq__gt=Subquery(read)).exists()


def take_unread(run_id: int) -> list[HistoryMessage]:
    """Read the waiting steering messages for good (``run.steered``); [] when none."""
    if not has_unread(run_id):
        return []
    return [history_message(m) for m in steering.take(run_id)]


def read_so_far(run_id: int) -> tuple[HistoryMessage, ...]:
    """The steering messages ``run_id`` has read (what :attr:`Turn.steered` holds)."""
    read = AgentRun.objects.filter(pk=run_id).values("steered_seq")[:1]
    rows = (
        Message.objects.select_related("author")
        .filter(steer_run_id=run_id, seq__lte=Subquery(read))
        .order_by("seq")
    )
    return tuple(history_message(m) for m in rows)


async def take(run_id: int) -> list[HistoryMessage]:
    """:func:`take_unread` on the database thread, retried while the database is away
    (a retry of a committed read finds nothing new: the seq moved on)."""
    return await retrying(lambda: db(take_unread)(run_id), f"run {run_id}: read steering")


def reader(queue: asyncio.Queue[Any]) -> Callable[[], Awaitable[list[HistoryMessage]]]:
    """The agent's :meth:`Turn.steering` for one step: a request through its output queue."""

    async def read() -> list[HistoryMessage]:
        request = SteerRequest()
        await queue.put(request)
        return await request.answer

    return read


async def answer(request: SteerRequest, writer: ReplyWriter, run_id: int) -> None:
    """Give the agent the steering messages that arrived, ending the part being written
    first when there are any (nothing changes when none did)."""
    try:
        taken: list[HistoryMessage] = []
        if await retrying(lambda: db(has_unread)(run_id), f"run {run_id}: look for steering"):
            await writer.end_part()
            taken = await take(run_id)
    except BaseException as exc:
        if not request.answer.done():
            request.answer.set_exception(exc)
        raise
    if not request.answer.done():
        request.answer.set_result(taken)


async def requeue_unread(run_id: int) -> bool:
    """After the run ended: a new run answers the steering messages it never read."""
    what = f"run {run_id}: requeue steering"
    try:
        if not await retrying(lambda: db(has_unread)(run_id), what):
            return False
        return await retrying(lambda: db(steering.requeue_unread)(run_id), what)
    except ServiceError:  # e.g. the session was deleted meanwhile: nothing left to answer
        return False
