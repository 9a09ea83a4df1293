"""The agent runtime: executes runs apart from any connection.

A :class:`Worker` (one per process) hears about new runs on ``RUN_CHANNEL``, sweeps
for pending runs whose announcement was lost, and reaps runs whose lease expired
(their process died). A :class:`RunExecutor` claims one run, streams the agent's
output through a coalescing buffer into the session service, renews the lease, and
stops at once when the session tells it to (cancel, takeover, close).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from durable_sessions import service, wire
from durable_sessions.agents import AgentError, Handoff, HistoryMessage, Turn, get_agent
from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.groups import session_group
from durable_sessions.delivery.publish import (
    EPHEMERAL_MESSAGE_TYPE,
    LIVE_MESSAGE_TYPE,
    RUN_MESSAGE_TYPE,
    apublish_ephemeral,
)
from durable_sessions.errors import MessageFinished, NotInControl, ServiceError, SessionClosed
from durable_sessions.models import (
    AgentRun,
    Control,
    DurableSession,
    Event,
    Message,
    ParticipantKind,
    RunStatus,
)
from durable_sessions.service import runs
from durable_sessions.tasks import background_task

logger = logging.getLogger(__name__)

# Log events after which a run must check whether it may go on.
_STOP_EVENTS = {
    wire.MESSAGE_CANCELLED,
    wire.CONTROL_CHANGED,
    wire.SESSION_CLOSED,
    wire.MESSAGE_FAILED,
}
_DONE = object()


class Interrupted(Exception):
    """The session stopped the run (cancel, takeover, close or a lost lease)."""


def build_turn(session_id: uuid.UUID) -> Turn:
    """The history and context an agent answers from."""
    session = DurableSession.objects.get(pk=session_id)
    limit = ds_settings.HISTORY_LIMIT
    recent = list(
        Message.objects.filter(session_id=session_id)
        .exclude(content="")
        .select_related("author")
        .order_by("-seq")[:limit]
    )
    history = [
        HistoryMessage(m.role, m.content, m.author.display_name, m.state) for m in reversed(recent)
    ]
    last_control = (
        Event.objects.filter(session_id=session_id, type=wire.CONTROL_CHANGED)
        .order_by("-seq")
        .values_list("seq", "payload")
        .first()
    )
    # Handed back by a human, and the AI has not answered since: its first turn back.
    handed_back = bool(
        last_control
        and last_control[1]["control"] == Control.AI
        and last_control[1]["previous"] != Control.AI
        and not Message.objects.filter(
            session_id=session_id, role="assistant", seq__gt=last_control[0]
        ).exists()
    )
    return Turn(str(session_id), history, dict(session.metadata), handed_back)


def _clip(text: object, limit: int) -> str:
    """An agent's text made acceptable to the service: a string, no NUL, bounded."""
    return str(text).replace("\x00", "")[:limit]


class RunExecutor:
    """Executes one run for a worker."""

    def __init__(self, worker: Worker, run_id: int) -> None:
        self.worker = worker
        self.run_id = run_id
        self.run: AgentRun | None = None
        self.message: Message | None = None
        self.stop_reason: str | None = None
        self._main: asyncio.Task[Any] | None = None
        self._finishing = False

    async def execute(self) -> None:
        layer = get_channel_layer()
        session_id = await database_sync_to_async(
            lambda: (
                AgentRun.objects.values_list("session_id", flat=True).filter(pk=self.run_id).first()
            )
        )()
        if session_id is None:
            return
        self._main = asyncio.current_task()
        # Listen before claiming: a cancel committed after the claim cannot be missed.
        channel = await layer.new_channel() if layer else None
        if layer and channel:
            await layer.group_add(session_group(session_id), channel)
        watcher = asyncio.create_task(self._watch(layer, channel)) if channel else None
        try:
            self.run = await database_sync_to_async(runs.claim)(self.run_id, self.worker.id)
            if self.run is None:
                return
            await self._execute_claimed(session_id)
        finally:
            if watcher:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if layer and channel:
                await layer.group_discard(session_group(session_id), channel)

    async def _execute_claimed(self, session_id: uuid.UUID) -> None:
        heartbeat = asyncio.create_task(self._heartbeat())
        outcome, error = RunStatus.COMPLETED, ""
        handoff: Handoff | None = None
        try:
            await apublish_ephemeral(
                session_id, service.agent_status_frame("thinking", self.run_id)
            )
            turn = await database_sync_to_async(build_turn)(session_id)
            handoff = await self._stream(session_id, turn)
        except asyncio.CancelledError:
            if self.stop_reason is None:
                raise  # the worker is shutting down
            asyncio.current_task().uncancel()
            outcome, error = RunStatus.CANCELLED, self.stop_reason
        except (Interrupted, NotInControl, MessageFinished, SessionClosed) as exc:
            outcome, error = RunStatus.CANCELLED, str(exc)
        except Exception as exc:  # the agent failed: keep the partial text, mark it failed
            logger.warning("run %s failed: %s", self.run_id, exc, exc_info=True)
            outcome, error = RunStatus.FAILED, str(exc) or type(exc).__name__
            with contextlib.suppress(ServiceError):
                if self.message is None:
                    # Failed before its first word: the failure still shows in the log.
                    self.message = await service.astart_assistant_message(session_id)
                await service.afail_assistant_message(self.message, error)
        finally:
            self._finishing = True  # from here on, nothing may interrupt the bookkeeping
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        ended = await database_sync_to_async(runs.finish)(
            self.run_id, self.worker.id, outcome, error
        )
        if ended:
            await apublish_ephemeral(session_id, service.agent_status_frame("idle", self.run_id))
        if handoff is not None and outcome == RunStatus.COMPLETED:
            agent = await database_sync_to_async(service.participant_for)(
                session_id, ParticipantKind.AGENT
            )
            try:
                await service.arequest_handoff(
                    session_id,
                    by=agent,
                    reason=_clip(handoff.reason, 500),
                    summary=_clip(handoff.summary, 4000),
                )
            except ServiceError as exc:  # e.g. closed meanwhile: nothing left to hand off
                logger.info("handoff of run %s not made: %s", self.run_id, exc)
        # A message that arrived meanwhile left a pending run behind this one.
        following = await database_sync_to_async(runs.next_pending_in_session)(session_id)
        if following is not None:
            self.worker.submit(following)

    async def _stream(self, session_id: uuid.UUID, turn: Turn) -> Handoff | None:
        """Pump the agent's output into coalesced deltas; returns a requested handoff."""
        interval = float(ds_settings.FLUSH_INTERVAL_MS) / 1000.0
        max_chars = int(ds_settings.FLUSH_MAX_CHARS)
        idle = float(ds_settings.AGENT_IDLE_TIMEOUT)
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1024)
        producer = asyncio.create_task(self._produce(turn, queue))
        buffer: list[str] = []
        buffered = 0
        flush_at: float | None = None

        async def flush() -> None:
            nonlocal buffered, flush_at
            if buffer:
                text = "".join(buffer)
                buffer.clear()
                buffered, flush_at = 0, None
                # The service re-checks, under the session lock, that the AI still has
                # control and the reply is still streaming: no text after a takeover.
                await service.delta_writer.append(self.message.session_id, self.message.pk, text)

        try:
            idle_deadline = time.monotonic() + idle
            while True:
                now = time.monotonic()
                deadline = min(idle_deadline, flush_at) if flush_at else idle_deadline
                try:
                    item = await asyncio.wait_for(queue.get(), max(deadline - now, 0))
                except TimeoutError:
                    if flush_at is not None and time.monotonic() >= flush_at:
                        await flush()
                        continue
                    raise AgentError(f"the agent produced nothing for {idle:g} s") from None
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    await flush()  # keep what the agent said before it failed
                    raise item
                idle_deadline = time.monotonic() + idle
                if isinstance(item, Handoff):
                    await flush()
                    if self.message is not None:
                        await service.afinish_assistant_message(self.message)
                        self.message = None
                    return item
                if not isinstance(item, str) or not item:
                    continue
                if self.message is None:
                    await self._open_message(session_id)
                buffer.append(item)
                buffered += len(item)
                if buffered >= max_chars:
                    await flush()
                elif flush_at is None:
                    flush_at = time.monotonic() + interval
            await flush()
            if self.message is not None:
                await service.afinish_assistant_message(self.message)
            return None
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer

    async def _open_message(self, session_id: uuid.UUID) -> None:
        self.message = await service.astart_assistant_message(session_id)
        await database_sync_to_async(runs.attach_message)(self.run_id, self.message.pk)
        await apublish_ephemeral(session_id, service.agent_status_frame("streaming", self.run_id))

    @staticmethod
    async def _produce(turn: Turn, queue: asyncio.Queue[Any]) -> None:
        try:
            async for item in get_agent().stream(turn):
                await queue.put(item)
            await queue.put(_DONE)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await queue.put(exc)

    def _interrupt(self, reason: str) -> None:
        if self._finishing or self.stop_reason is not None:
            return
        if self._main is not None and not self._main.done():
            self.stop_reason = reason
            self._main.cancel()

    async def _still_mine(self) -> bool:
        return await database_sync_to_async(
            lambda: AgentRun.objects.filter(
                pk=self.run_id, status=RunStatus.RUNNING, worker=self.worker.id
            ).exists()
        )()

    async def _watch(self, layer: Any, channel: str) -> None:
        """Stop the run as soon as the session says so (a wake-up, then a database check)."""
        while True:
            message = await layer.receive(channel)
            if self.run is None or self.run.status != RunStatus.RUNNING:
                continue  # not claimed yet; the claim itself checks the state
            relevant = False
            if message.get("type") == LIVE_MESSAGE_TYPE:
                relevant = any(f["type"] in _STOP_EVENTS for f in message["events"])
            elif message.get("type") == EPHEMERAL_MESSAGE_TYPE:
                frame = message["frame"]
                relevant = frame.get("type") == "agent.status" and frame.get("status") == "idle"
            if relevant and not await self._still_mine():
                self._interrupt("stopped by the session")

    async def _heartbeat(self) -> None:
        interval = float(ds_settings.HEARTBEAT_INTERVAL)
        while True:
            await asyncio.sleep(interval)
            try:
                mine = await database_sync_to_async(runs.renew_lease)(self.run_id, self.worker.id)
            except Exception:
                logger.exception("lease renewal of run %s failed", self.run_id)
                continue
            if not mine:
                self._interrupt("the run was stopped or its lease was lost")
                return


class Worker:
    """Executes runs in this process: announced, swept up, or left by a dead process."""

    def __init__(self, name: str | None = None) -> None:
        self.id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self._loops: list[asyncio.Task[None]] = []

    def submit(self, run_id: int) -> bool:
        """Start executing ``run_id`` unless it already runs here or the worker is full."""
        if run_id in self.tasks or len(self.tasks) >= ds_settings.MAX_CONCURRENT_RUNS:
            return False
        task = background_task(RunExecutor(self, run_id).execute())
        self.tasks[run_id] = task
        task.add_done_callback(lambda _t, rid=run_id: self._done(rid, _t))
        return True

    def _done(self, run_id: int, task: asyncio.Task[None]) -> None:
        self.tasks.pop(run_id, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("run %s crashed in its executor", run_id, exc_info=task.exception())

    def start(self) -> None:
        self._loops = [background_task(self._listen()), background_task(self._sweep())]

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._loops)

    async def stop(self) -> None:
        for task in [*self._loops, *self.tasks.values()]:
            task.cancel()
        for task in [*self._loops, *self.tasks.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _listen(self) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        while True:
            try:
                message = await layer.receive(ds_settings.RUN_CHANNEL)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("receiving run announcements failed")
                await asyncio.sleep(1)
                continue
            if message.get("type") == RUN_MESSAGE_TYPE:
                self.submit(int(message["run_id"]))

    async def sweep_once(self) -> None:
        """Pick up pending runs whose announcement was lost; reap runs of dead processes."""
        for run_id in await database_sync_to_async(runs.expired_ids)():
            try:
                await service.acrash_run(run_id)
            except Exception:
                logger.exception("reaping run %s failed", run_id)
        room = ds_settings.MAX_CONCURRENT_RUNS - len(self.tasks)
        if room > 0:
            for run_id in await database_sync_to_async(runs.pending_ids)(room):
                self.submit(run_id)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(float(ds_settings.RUN_SWEEP_INTERVAL))
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("run sweep failed")


_embedded: Worker | None = None


def ensure_embedded_worker() -> Worker | None:
    """Start this process's worker in the running loop when runs execute in the server."""
    global _embedded
    if ds_settings.RUNNER != "embedded":
        return None
    loop = asyncio.get_running_loop()
    if _embedded is None or not _embedded.running or _embedded._loops[0].get_loop() is not loop:
        _embedded = Worker()
        _embedded.start()
    return _embedded


def embedded_worker() -> Worker | None:
    return _embedded
