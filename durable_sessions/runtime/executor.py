"""Executing one run: claim it, stream the agent's output into the log, finish it.

A :class:`RunExecutor` listens to its session before claiming (a cancel committed after
the claim cannot be missed), renews its lease, and loops over the agent's steps: each
step's output is written as parts (:mod:`~durable_sessions.runtime.reply`), its tool
calls are settled (:mod:`~durable_sessions.runtime.tool_calls`), and a call that needs
an approval suspends the run, which any worker continues once it is answered. It stops
at once when the session says so (cancel, takeover, close). The service refuses, under
the session lock, every AI write after a human took over.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from durable_sessions import service, wire
from durable_sessions.agents import Agent, AgentError, Handoff, Turn, get_agent
from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.groups import session_group
from durable_sessions.delivery.publish import (
    EPHEMERAL_MESSAGE_TYPE,
    LIVE_MESSAGE_TYPE,
    ephemeral_wakeup,
    publish_now,
)
from durable_sessions.errors import (
    InvalidInput,
    MessageFinished,
    NotInControl,
    RunNotOwned,
    ServiceError,
    SessionClosed,
)
from durable_sessions.models import (
    AgentRun,
    Message,
    MessagePart,
    MessageState,
    ParticipantKind,
    RunStatus,
)
from durable_sessions.observability import logs, metrics, tracing
from durable_sessions.runtime import steering
from durable_sessions.runtime.reply import ReplyWriter
from durable_sessions.runtime.tool_calls import ToolCalls
from durable_sessions.runtime.turns import build_turn
from durable_sessions.service import approvals, parts, runs
from durable_sessions.service.transient import is_transient, retrying
from durable_sessions.service.validation import MAX_REASON_CHARS, MAX_SUMMARY_CHARS, clean_team

logger = logging.getLogger(__name__)

# Log events after which a run must check whether it may go on.
_STOP_EVENTS = {
    wire.MESSAGE_CANCELLED,
    wire.CONTROL_CHANGED,
    wire.SESSION_CLOSED,
    wire.MESSAGE_FAILED,
    # Its lease expired while it still ran (a long pause): another worker now continues it.
    wire.RUN_RETRYING,
}
_DONE = object()

db = database_sync_to_async
T = TypeVar("T")


class Interrupted(Exception):
    """The session stopped the run (cancel, takeover, close or a lost lease)."""


def _clip(text: object, limit: int) -> str:
    """An agent's text made acceptable to the service: a string, no NUL, bounded."""
    return str(text).replace("\x00", "")[:limit]


def _team(team: object, run_id: int) -> str:
    """The agent's team for a handoff; one that is not a slug is dropped (the handoff
    still happens, to the whole queue)."""
    try:
        return clean_team(team)
    except InvalidInput as exc:
        logger.warning("run %s: handoff team ignored: %s", run_id, exc)
        return ""


def _continued_reply(message_id: int) -> tuple[Message, list[MessagePart]]:
    """The reply a continued run writes on, and its parts so far."""
    message = Message.objects.get(pk=message_id)
    if message.state != MessageState.STREAMING:
        raise MessageFinished(f"message {message_id} is already {message.state}")
    return message, parts.reply_parts(message_id)


def public_error(exc: BaseException) -> str:
    """What customers read when a reply fails: the agent's own words for its errors,
    never a database driver's or a library's text (those go to the log)."""
    if isinstance(exc, AgentError):
        return str(exc) or "the agent failed"
    if is_transient(exc):
        return "the reply was interrupted by a storage failure"
    return "the agent failed"


def _is_stop(message: dict[str, Any]) -> bool:
    """Whether a session wake-up may mean that the run must stop."""
    if message.get("type") == LIVE_MESSAGE_TYPE:
        if any(f["type"] in _STOP_EVENTS for f in message["events"]):
            return True
        frames = [e["frame"] for e in message.get("ephemeral", ())]
    elif message.get("type") == EPHEMERAL_MESSAGE_TYPE:
        frames = [message["frame"]]
    else:
        return False
    return any(f.get("type") == "agent.status" and f.get("status") == "idle" for f in frames)


class RunExecutor:
    """Executes one run for the worker ``worker_id``; ``submit`` hands it the session's
    next pending run when this one ends."""

    def __init__(
        self,
        worker_id: str,
        run_id: int,
        submit: Callable[[int], object],
        *,
        fair: bool = False,
    ) -> None:
        self.worker_id = worker_id
        self.submit = submit
        self.fair = fair  # claim only within this worker's fair share (see service.workers)
        self.handing_back = False  # the worker stops: the run goes back to pending
        self.run_id = run_id
        self.run: AgentRun | None = None
        self.writer: ReplyWriter | None = None
        self.stop_reason: str | None = None
        self.suspended = False  # waiting for an approval: the run is not finished
        self._announced: tuple[str, str | None] | None = None
        self._main: asyncio.Task[Any] | None = None
        self._finishing = False

    async def _db(self, fn: Callable[..., T], *args: Any, what: str) -> T:
        """``fn(*args)`` on the database thread, retried while the database is away."""
        return await retrying(lambda: db(fn)(*args), f"run {self.run_id}: {what}")

    async def execute(self) -> None:
        session_id = await self._db(runs.session_of, self.run_id, what="find its session")
        if session_id is None:
            return
        self._main = asyncio.current_task()
        logs.bind(session_id=session_id, run_id=self.run_id, worker=self.worker_id)
        layer = get_channel_layer()
        # Listen before claiming: a cancel committed after the claim cannot be missed.
        channel = await layer.new_channel() if layer else None
        if layer and channel:
            await layer.group_add(session_group(session_id), channel)
        watcher = asyncio.create_task(self._watch(layer, channel)) if channel else None
        try:
            self.run = await self._db(
                partial(runs.claim, fair=self.fair), self.run_id, self.worker_id, what="claim"
            )
            if self.run is None:
                return
            with tracing.span("ds.run", session_id=session_id, run_id=self.run_id):
                await self._execute_claimed(session_id)
        finally:
            if watcher:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if layer and channel:
                await layer.group_discard(session_group(session_id), channel)

    async def _status(self, session_id: uuid.UUID, status: str) -> None:
        frame = service.agent_status_frame(status, self.run_id)
        await publish_now([ephemeral_wakeup(session_id, frame)])

    async def _announce(self, status: str, tool: str | None) -> None:
        """Tell clients what the agent does, once per change."""
        if (status, tool) == self._announced or self.run is None:
            return
        self._announced = (status, tool)
        assert self.writer is not None
        frame = service.agent_status_frame(status, self.run_id, tool=tool)
        await publish_now([ephemeral_wakeup(self.writer.session_id, frame)])

    async def _execute_claimed(self, session_id: uuid.UUID) -> None:
        heartbeat = asyncio.create_task(self._heartbeat())
        outcome: str | None = RunStatus.COMPLETED  # None: handed back to another worker
        error = ""
        handoff: Handoff | None = None
        lease = (
            service.RunLease(self.run_id, self.worker_id, self.run.attempts) if self.run else None
        )
        self.writer = ReplyWriter(self.run_id, session_id, self._announce, lease)
        self.writer.run_created_at = self.run.created_at if self.run else None
        try:
            # No "thinking" here: it went out with the message that made the run (or with
            # the end of the run this one waited for, or with the answer to an approval).
            # A retry's clients saw "reconnecting": they hear that the agent is back.
            self._announced = ("thinking", None)
            if self.run is not None and self.run.attempts > 1:
                self._announced = None
                await self._announce("thinking", None)
            with tracing.span("ds.agent.stream", session_id=session_id, run_id=self.run_id):
                handoff = await self._steps(session_id)
        except asyncio.CancelledError:
            if self.handing_back:
                asyncio.current_task().uncancel()
                outcome = None
            elif self.stop_reason is None:
                raise  # the worker is shutting down
            else:
                asyncio.current_task().uncancel()
                outcome, error = RunStatus.CANCELLED, self.stop_reason
        except (Interrupted, NotInControl, MessageFinished, SessionClosed, RunNotOwned) as exc:
            outcome, error = RunStatus.CANCELLED, str(exc)
        except Exception as exc:  # the agent failed: keep the partial text, mark it failed
            logger.warning("run %s failed: %s", self.run_id, exc, exc_info=True)
            outcome, error = RunStatus.FAILED, str(exc) or type(exc).__name__
            with contextlib.suppress(ServiceError):
                if self.writer.message is None:
                    # Failed before its first word: the failure still shows in the log.
                    await self.writer.open(announce=False)
                await self.writer.end(
                    service.afail_assistant_message, public_error(exc), what="fail"
                )
        finally:
            self._finishing = True  # from here on, nothing may interrupt the bookkeeping
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        if self.suspended:
            return  # waits for an answer, holding no worker; any worker continues it
        if outcome is None:
            await self._release()
            return
        ended = await self._db(
            runs.finish, self.run_id, self.worker_id, outcome, error, what="finish"
        )
        await steering.requeue_unread(self.run_id)  # steering it never read: a run of its own
        metrics.run_finished(outcome, self.run.started_at if self.run else None)
        if handoff is not None and outcome == RunStatus.COMPLETED:
            if ended:
                await self._status(session_id, "idle")
            await self._hand_off(session_id, handoff)  # cancels any run waiting behind
            return
        # A message that arrived meanwhile left a pending run behind this one: the agent
        # goes on thinking about it rather than blinking idle.
        following = await self._db(runs.next_pending_in_session, session_id, what="find the next")
        if ended:
            frame = service.agent_status_frame(
                "thinking" if following is not None else "idle", following or self.run_id
            )
            await publish_now([ephemeral_wakeup(session_id, frame)])
        if following is not None:
            self.submit(following)

    async def _hand_off(self, session_id: uuid.UUID, handoff: Handoff) -> None:
        agent = await self._db(
            service.participant_for, session_id, ParticipantKind.AGENT, what="hand off"
        )
        try:
            await retrying(
                lambda: service.arequest_handoff(
                    session_id,
                    by=agent,
                    reason=_clip(handoff.reason, MAX_REASON_CHARS),
                    summary=_clip(handoff.summary, MAX_SUMMARY_CHARS),
                    team=_team(handoff.team, self.run_id),
                ),
                f"run {self.run_id}: hand off",
            )
        except ServiceError as exc:  # e.g. closed meanwhile: nothing left to hand off
            logger.info("handoff of run %s not made: %s", self.run_id, exc)

    async def _steps(self, session_id: uuid.UUID) -> Handoff | None:
        """The run's loop: a step of the agent, then its tool calls, until the agent
        answers without calling a tool, asks for a human, waits for an approval (the run
        is suspended) or reaches MAX_AGENT_STEPS."""
        writer = self.writer
        assert writer is not None and self.run is not None
        agent = get_agent()
        tools = ToolCalls(self.run_id, session_id, agent, self._announce)
        if self.run.message_id is not None:
            # A reply continued after its approvals: its finished steps are not redone.
            message, existing = await self._db(
                _continued_reply, self.run.message_id, what="read the reply"
            )
            await writer.adopt(message, existing)
            await tools.run_approved(message.pk)
        while True:
            if writer.step >= ds_settings.MAX_AGENT_STEPS:
                logger.info("run %s reached MAX_AGENT_STEPS", self.run_id)
                await writer.finish()
                return None
            reply_id = writer.message.pk if writer.message is not None else None
            if steering.supported(agent):
                await steering.take(self.run_id)  # sent during the last step: read them now
            turn = await self._db(
                build_turn, session_id, reply_id, writer.step, self.run_id, what="read"
            )
            handoff = await self._stream(agent, turn)
            if handoff is not None:
                await writer.finish()
                return handoff
            calls = writer.take_calls()
            if not calls:
                if await self._steered_on(agent):
                    continue  # one more step, with what the customer added
                await writer.finish()
                return None
            await writer.end_part()
            await tools.settle(calls)
            assert writer.message is not None
            message_id = writer.message.pk
            if await self._db(
                approvals.suspend, self.run_id, self.worker_id, message_id, what="suspend"
            ):
                self.suspended = True
                return None
            await tools.run_approved(message_id)  # answered before the run could wait
            writer.step += 1

    async def _steered_on(self, agent: Agent) -> bool:
        """At the end of a step without tool calls: whether steering messages arrived that
        the agent has not read (the reply then goes on, in a step of its own)."""
        writer = self.writer
        assert writer is not None
        if not steering.supported(agent) or writer.step + 1 >= ds_settings.MAX_AGENT_STEPS:
            return False
        if not await self._db(steering.has_unread, self.run_id, what="look for steering"):
            return False
        await writer.end_part()
        writer.step += 1
        return True

    async def _stream(self, agent: Agent, turn: Turn) -> Handoff | None:
        """Pump one step of the agent's output into the reply's parts; returns a
        requested handoff."""
        writer = self.writer
        assert writer is not None
        idle = ds_settings.AGENT_IDLE_TIMEOUT
        buffer = writer.buffer
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1024)
        if steering.supported(agent):
            turn = dataclasses.replace(turn, steering_reader=steering.reader(queue))
        producer = asyncio.create_task(self._produce(agent, turn, queue))
        try:
            idle_deadline = time.monotonic() + idle
            while True:
                deadline = min(idle_deadline, buffer.deadline or idle_deadline)
                try:
                    item = await asyncio.wait_for(queue.get(), max(deadline - time.monotonic(), 0))
                except TimeoutError:
                    if buffer.due():
                        await writer.flush()
                        continue
                    raise AgentError(f"the agent produced nothing for {idle:g} s") from None
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    await writer.flush()  # keep what the agent said before it failed
                    raise item
                idle_deadline = time.monotonic() + idle
                if isinstance(item, Handoff):
                    return item
                if isinstance(item, steering.SteerRequest):
                    await steering.answer(item, writer, self.run_id)
                    continue
                await writer.add(item)
            await writer.flush()
            return None
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer

    @staticmethod
    async def _produce(agent: Agent, turn: Turn, queue: asyncio.Queue[Any]) -> None:
        try:
            async for item in agent.stream(turn):
                await queue.put(item)
            await queue.put(_DONE)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await queue.put(exc)

    def hand_back(self) -> None:
        """The worker stops: end this attempt now, and leave the run to another worker."""
        if self._finishing or self.handing_back or self.stop_reason is not None:
            return
        if self._main is not None and not self._main.done() and self.run is not None:
            self.handing_back = True
            self._main.cancel()

    async def _release(self) -> None:
        """Write what the reply holds, then put the run back to pending (no crash is
        counted); if that fails, its lease expires and it is retried as after a crash."""
        try:
            if self.writer is not None and self.writer.message is not None:
                await self.writer.flush()
            await service.arelease_run(self.run_id, self.worker_id)
        except Exception as exc:
            logger.warning("run %s: hand-back failed (%s); its lease will expire", self.run_id, exc)

    def _interrupt(self, reason: str) -> None:
        if self._finishing or self.stop_reason is not None:
            return
        if self._main is not None and not self._main.done():
            self.stop_reason = reason
            self._main.cancel()

    async def _watch(self, layer: Any, channel: str) -> None:
        """Stop the run as soon as the session says so (a wake-up, then a database check)."""
        while True:
            message = await layer.receive(channel)
            if self.run is None or self.run.status != RunStatus.RUNNING:
                continue  # not claimed yet; the claim itself checks the state
            if _is_stop(message) and not await db(runs.is_running)(self.run_id, self.worker_id):
                self._interrupt("stopped by the session")

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(ds_settings.HEARTBEAT_INTERVAL)
            try:
                mine = await db(runs.renew_lease)(self.run_id, self.worker_id)
            except Exception as exc:
                if not is_transient(exc):
                    logger.exception("lease renewal of run %s failed", self.run_id)
                else:  # the next beat tries again, well within the lease
                    logger.warning("lease renewal of run %s failed: %s", self.run_id, exc)
                continue
            if not mine:
                self._interrupt("the run was stopped or its lease was lost")
                return
