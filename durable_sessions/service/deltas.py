"""Group commit for streaming deltas: the appends of many sessions share one transaction.

One event per transaction is bounded by the commit (a disk flush) and by the single
database thread of a process. :class:`DeltaWriter` queues the deltas of every stream in
the process and writes whatever has queued up in one transaction while the previous
one runs, so that busy processes commit many events at once and an idle one adds no
delay. Each delta still takes its session's row lock and the next ``seq``, is refused
when the AI lost control or the reply ended, and is published only after commit.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from durable_sessions import events as ev
from durable_sessions.errors import (
    InvalidInput,
    MessageFinished,
    NotInControl,
    ServiceError,
    SessionClosed,
    SessionNotFound,
)
from durable_sessions.models import Control, DurableSession, Event, Message, MessageState, Status
from durable_sessions.publish import asend, collecting
from durable_sessions.service.log import save_and_publish
from durable_sessions.tasks import background_task

# Deltas written per transaction at most.
MAX_BATCH = 500


@dataclass
class _Delta:
    session_id: uuid.UUID
    message_id: int
    text: str
    future: asyncio.Future[int] = field(repr=False)


def _rounds(batch: list[_Delta]) -> list[list[_Delta]]:
    """Split a batch so that each round has at most one delta per session, in id order
    (a fixed lock order: batches of two processes cannot deadlock)."""
    rounds: list[list[_Delta]] = []
    for delta in batch:
        for round_ in rounds:
            if all(d.session_id != delta.session_id for d in round_):
                round_.append(delta)
                break
        else:
            rounds.append([delta])
    return [sorted(r, key=lambda d: d.session_id.hex) for r in rounds]


def _db_id(session_id: uuid.UUID) -> object:
    return DurableSession._meta.pk.get_db_prep_value(session_id, connection)


def _reserve(round_: list[_Delta]) -> dict[uuid.UUID, int]:
    """Lock the open, AI-controlled sessions of the round and take their next seq."""
    table = connection.ops.quote_name(DurableSession._meta.db_table)
    ids = [_db_id(d.session_id) for d in round_]
    marks = ", ".join(["%s"] * len(ids))
    now = timezone.now()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Lock in id order; FOR UPDATE re-checks status and control once locked.
            cursor.execute(
                f"UPDATE {table} AS s SET last_seq = s.last_seq + 1, updated_at = %s "
                f"FROM (SELECT id FROM {table} WHERE id IN ({marks}) AND status = %s "
                "AND control = %s ORDER BY id FOR UPDATE) AS l "
                "WHERE s.id = l.id RETURNING s.id, s.last_seq",
                [now, *ids, Status.OPEN, Control.AI],
            )
        else:  # SQLite: the whole database is locked by the write transaction.
            cursor.execute(
                f"UPDATE {table} SET last_seq = last_seq + 1, updated_at = %s "
                f"WHERE id IN ({marks}) AND status = %s AND control = %s "
                "RETURNING id, last_seq",
                [now, *ids, Status.OPEN, Control.AI],
            )
        rows = cursor.fetchall()
    return {_as_uuid(sid): seq for sid, seq in rows}


def _as_uuid(value: object) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _refusal(session_id: uuid.UUID) -> ServiceError:
    state = DurableSession.objects.filter(pk=session_id).values_list("status", flat=True).first()
    if state is None:
        return SessionNotFound(f"session {session_id} does not exist")
    if state != Status.OPEN:
        return SessionClosed(f"session {session_id} is closed")
    return NotInControl(f"the AI no longer controls session {session_id}")


def _concatenate(round_: list[_Delta]) -> set[int]:
    """Append each text to its still-streaming message; returns the ids updated."""
    table = connection.ops.quote_name(Message._meta.db_table)
    uuid_cast = "CAST(%s AS uuid)" if connection.vendor == "postgresql" else "%s"
    rows = ", ".join(f"(CAST(%s AS BIGINT), {uuid_cast}, CAST(%s AS TEXT))" for _ in round_)
    params: list[object] = []
    for delta in round_:
        params += [delta.message_id, _db_id(delta.session_id), delta.text]
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH v(mid, sid, txt) AS (VALUES {rows}) "
            f"UPDATE {table} SET content = content || "
            f"(SELECT txt FROM v WHERE v.mid = {table}.id) "
            f"WHERE id IN (SELECT mid FROM v WHERE v.sid = {table}.session_id) "
            "AND state = %s RETURNING id",
            [*params, MessageState.STREAMING],
        )
        return {row[0] for row in cursor.fetchall()}


def _write_round(round_: list[_Delta]) -> tuple[list[Event], list[int | ServiceError]]:
    seqs = _reserve(round_)
    outcomes: dict[int, int | ServiceError] = {}
    accepted = []
    for index, delta in enumerate(round_):
        if delta.session_id in seqs:
            accepted.append((index, delta))
        else:
            outcomes[index] = _refusal(delta.session_id)
    written = _concatenate([d for _, d in accepted]) if accepted else set()
    rows: list[Event] = []
    unreserve = []
    now = timezone.now()
    for index, delta in accepted:
        if delta.message_id not in written:
            outcomes[index] = MessageFinished(f"message {delta.message_id} is no longer streaming")
            unreserve.append(delta.session_id)
            continue
        seq = seqs[delta.session_id]
        payload = {"message_id": delta.message_id, "text": delta.text}
        rows.append(
            Event(
                session_id=delta.session_id,
                seq=seq,
                type=ev.MESSAGE_DELTA,
                payload=payload,
                created_at=now,
            )
        )
        outcomes[index] = seq
    if unreserve:
        # Give the reserved seqs back; the transaction goes on for the other deltas.
        DurableSession.objects.filter(pk__in=unreserve).update(last_seq=F("last_seq") - 1)
    return rows, [outcomes[i] for i in range(len(round_))]


def write_batch(batch: list[_Delta]) -> list[int | ServiceError]:
    """Write the deltas in one transaction; per delta its seq or the refusal."""
    outcome_of: dict[int, int | ServiceError] = {}
    with transaction.atomic():
        rows: list[Event] = []
        for round_ in _rounds(batch):
            staged, outcomes = _write_round(round_)
            rows += staged
            for delta, outcome in zip(round_, outcomes, strict=True):
                outcome_of[id(delta)] = outcome
        save_and_publish(rows)
    return [outcome_of[id(delta)] for delta in batch]


class DeltaWriter:
    """Queues deltas and writes them in group commits, one transaction at a time."""

    def __init__(self) -> None:
        self._queue: list[_Delta] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def append(self, session_id: uuid.UUID, message_id: int, text: str) -> int:
        """Append ``text`` to a streaming reply; returns its seq once committed.

        Raises :class:`NotInControl`, :class:`MessageFinished` or :class:`SessionClosed`
        like :func:`durable_sessions.service.append_assistant_text`.
        """
        if not isinstance(text, str) or not text:
            raise InvalidInput("text", "must be a non-empty string")
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._wake = asyncio.Event()
            self._task = background_task(self._run())
        future: asyncio.Future[int] = loop.create_future()
        self._queue.append(_Delta(session_id, message_id, text, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                # A delta whose writer gave up waiting (its run was stopped) is not written.
                batch = [delta for delta in batch if not delta.future.done()]
                if not batch:
                    continue
                try:
                    outcomes, wakeups = await database_sync_to_async(collecting)(write_batch, batch)
                except Exception as exc:  # the whole transaction failed
                    for delta in batch:
                        if not delta.future.done():
                            delta.future.set_exception(exc)
                    continue
                for wakeup in wakeups:
                    await asend(wakeup)
                for delta, outcome in zip(batch, outcomes, strict=True):
                    if delta.future.done():
                        continue  # its run was cancelled meanwhile
                    if isinstance(outcome, ServiceError):
                        delta.future.set_exception(outcome)
                    else:
                        delta.future.set_result(outcome)


delta_writer = DeltaWriter()
