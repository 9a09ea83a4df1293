"""Group commit for streaming deltas: the appends of many sessions share one transaction.

One event per transaction is bounded by the commit (a disk flush) and by the single
database thread of a process. :class:`DeltaWriter` queues the deltas of every stream in
the process and writes whatever has queued up in one transaction while the previous
one runs, so that busy processes commit many events at once and an idle one adds no
delay. Each delta still takes its session's row lock and the next ``seq``, is refused
when the AI lost control, the reply ended or its writer no longer holds the run it writes
for, and is published only after commit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from durable_sessions import wire
from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.publish import (
    Wakeup,
    collecting,
    publish_now,
    publish_on_commit,
    session_wakeup,
)
from durable_sessions.errors import (
    InvalidInput,
    MessageFinished,
    NotInControl,
    RunNotOwned,
    ServiceError,
    SessionClosed,
    SessionNotFound,
)
from durable_sessions.models import (
    AgentRun,
    Control,
    DurableSession,
    Event,
    Message,
    MessageState,
    RunStatus,
    Status,
)
from durable_sessions.observability import metrics
from durable_sessions.service.unit import as_uuid, db_id
from durable_sessions.service.validation import storable
from durable_sessions.tasks import background_task

logger = logging.getLogger(__name__)

# Deltas written per transaction at most.
MAX_BATCH = 500
# How old a streaming session's ``updated_at`` may get before a delta moves it.
UPDATED_AT_RESOLUTION = timedelta(seconds=1)
# Parsing and planning the batch's statements took about half of PostgreSQL's time per
# batch: prepared once per connection, they are planned once (a generic plan, the same
# for every batch whatever its size) for as long as the connection lives.
_GENERIC_PLAN = "SET LOCAL plan_cache_mode = force_generic_plan"
# psycopg prepares only statements executed this many times, or asked for with
# prepare=True: while a batch runs, only the latter.
_ONLY_WHEN_ASKED = 2**31 - 1


@dataclass(frozen=True)
class RunLease:
    """Who writes a delta: the run, its worker and the attempt that claimed it. A delta
    is written only while that attempt still holds the run (running, same worker, same
    attempt): once the lease expired and another attempt took over, or the run ended,
    the old writer's late deltas are refused instead of doubling the reply."""

    run_id: int
    worker: str
    attempt: int


@dataclass
class _Delta:
    session_id: uuid.UUID
    message_id: int
    text: str
    # The part it grows (primary key and wire id); None for a reply without part rows.
    part_pk: int | None = None
    part_id: str | None = None
    # Text parts are sent as message.delta (they make the message's content); reasoning
    # and tool input as part.delta.
    is_text: bool = True
    # The run it is written for; None for a synchronous append_delta (scripts, tests).
    lease: RunLease | None = None
    # Resolved by the DeltaWriter; None for a synchronous append_delta.
    future: asyncio.Future[int] | None = field(default=None, repr=False)


def _by_session(batch: list[_Delta]) -> dict[uuid.UUID, list[_Delta]]:
    """The batch's deltas per session, in queue order, sessions in id order (a fixed lock
    order: the batches of two processes cannot deadlock)."""
    grouped: dict[uuid.UUID, list[_Delta]] = {}
    for delta in batch:
        grouped.setdefault(delta.session_id, []).append(delta)
    return {sid: grouped[sid] for sid in sorted(grouped, key=lambda s: s.hex)}


def _reserve(grouped: dict[uuid.UUID, list[_Delta]]) -> dict[uuid.UUID, int]:
    """(SQLite) Reserve one seq per queued delta of the open, AI-controlled sessions;
    returns each session's ``last_seq`` after the reservation. The write transaction
    locks the whole database."""
    table = connection.ops.quote_name(DurableSession._meta.db_table)
    rows = list(grouped.items())
    values = ", ".join(["(%s, %s)"] * len(rows))
    params = [x for session_id, deltas in rows for x in (db_id(session_id), len(deltas))]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_seq = last_seq + v.n, updated_at = %s "
            f"FROM (SELECT column1 AS id, column2 AS n FROM (VALUES {values})) AS v "
            f"WHERE {table}.id = v.id AND status = %s AND control = %s "
            f"RETURNING {table}.id, {table}.last_seq",
            [timezone.now(), *params, Status.OPEN, Control.AI],
        )
        found = cursor.fetchall()
    return {as_uuid(sid): seq for sid, seq in found}


def _refusal(session_id: uuid.UUID) -> ServiceError:
    state = DurableSession.objects.filter(pk=session_id).values_list("status", flat=True).first()
    if state is None:
        return SessionNotFound(f"session {session_id} does not exist")
    if state != Status.OPEN:
        return SessionClosed(f"session {session_id} is closed")
    return NotInControl(f"the AI no longer controls session {session_id}")


def _streaming(deltas: list[_Delta]) -> set[tuple[int, uuid.UUID]]:
    """The (message id, session id) pairs of the batch whose message still streams.

    Read under the session locks that every change of a message's state also takes. The
    text itself is not written: the deltas are the reply's text until it ends
    (:mod:`.text`), so a delta costs the same however long the reply has grown."""
    wanted = {(delta.message_id, delta.session_id) for delta in deltas}
    rows = Message.objects.filter(
        pk__in={message_id for message_id, _ in wanted}, state=MessageState.STREAMING
    ).values_list("pk", "session_id")
    return {(mid, as_uuid(sid)) for mid, sid in rows} & wanted


def _held(deltas: list[_Delta]) -> set[RunLease]:
    """(SQLite) The leases of the batch still held, in one query. Read under the session
    locks that a claim and a requeue of a run also take, so no other attempt can take the
    run between this check and the commit."""
    leases = {delta.lease for delta in deltas if delta.lease is not None}
    if not leases:
        return set()
    rows = AgentRun.objects.filter(
        pk__in={lease.run_id for lease in leases}, status=RunStatus.RUNNING
    ).values_list("pk", "worker", "attempts")
    return {RunLease(pk, worker, attempts) for pk, worker, attempts in rows} & leases


def _not_owned(lease: RunLease) -> RunNotOwned:
    return RunNotOwned(
        f"run {lease.run_id} is no longer held by {lease.worker!r} (attempt {lease.attempt})"
    )


def _wakeups(rows: list[Event]) -> list[Wakeup]:
    """One wake-up per session of the batch, with its deltas in seq order."""
    frames: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for row in rows:
        frames.setdefault(row.session_id, []).append(
            wire.frame(row.seq, row.type, row.payload, row.created_at)
        )
    return [session_wakeup(session_id, f) for session_id, f in frames.items()]


def write_batch(batch: list[_Delta]) -> list[int | ServiceError]:
    """Write the deltas in one transaction; per delta its seq or the refusal.

    A fixed number of statements however many deltas the batch holds. On PostgreSQL two,
    sent together (:func:`_write_postgresql`); elsewhere three: reserve the seqs of every
    session, check that every message still streams, insert every event (refusals add a
    few).
    """
    with transaction.atomic():
        grouped = _by_session(batch)
        if connection.vendor == "postgresql":
            outcome_of = _write_postgresql(grouped)
        else:
            outcome_of = _write_portable(grouped)
    return [outcome_of[id(delta)] for delta in batch]


def _payload(delta: _Delta) -> dict[str, Any]:
    payload: dict[str, Any] = {"message_id": delta.message_id, "text": delta.text}
    if delta.part_id is not None:
        payload["part_id"] = delta.part_id
    return payload


def _delta_type(delta: _Delta) -> str:
    return wire.MESSAGE_DELTA if delta.is_text else wire.PART_DELTA


# The whole batch in one statement, run once the sessions are locked (its snapshot then
# sees every committed change of their status, control and messages: each such change
# takes the same lock). Deltas whose session is open and AI-controlled and whose message
# still streams get the next seqs of their session in queue order (``ord``), when they
# carry no lease or their lease still holds the run (running, same worker and attempt:
# a claim and a requeue take the session's lock too); the others get none, so no seq is
# reserved for them and none has to be given back. ``updated_at`` moves only once it is
# UPDATED_AT_RESOLUTION old: left alone, no indexed column changes and PostgreSQL updates
# the row in place (a HOT update) instead of adding an entry to each of its indexes.
_BATCH_SQL = """
WITH v AS (
    SELECT * FROM json_to_recordset(%s::json)
        AS v(ord integer, sid uuid, mid bigint, typ text, payload jsonb,
             run bigint, worker text, attempt integer)
), r AS (
    SELECT v.ord FROM v JOIN {runs} AS run ON run.id = v.run
    WHERE run.status = %s AND run.worker = v.worker AND run.attempts = v.attempt
), s AS (
    SELECT id, last_seq FROM {sessions}
    WHERE id = ANY(%s::uuid[]) AND status = %s AND control = %s
), m AS (
    SELECT id, session_id FROM {messages} WHERE id = ANY(%s::bigint[]) AND state = %s
), d AS (
    SELECT v.ord, v.sid, v.typ, v.payload,
        s.last_seq + row_number() OVER (PARTITION BY v.sid ORDER BY v.ord) AS seq
    FROM v JOIN s ON s.id = v.sid JOIN m ON m.id = v.mid AND m.session_id = v.sid
    WHERE v.run IS NULL OR v.ord IN (SELECT ord FROM r)
), u AS (
    UPDATE {sessions} AS t SET last_seq = c.top,
        updated_at = CASE WHEN t.updated_at > %s THEN t.updated_at ELSE %s END
    FROM (SELECT sid, max(seq) AS top FROM d GROUP BY sid) AS c WHERE t.id = c.sid
), i AS (
    INSERT INTO {events} (session_id, seq, type, payload, created_at)
    SELECT sid, seq, typ, payload, %s FROM d
)
SELECT v.ord, d.seq, s.id IS NOT NULL, v.run IS NULL OR v.ord IN (SELECT ord FROM r) FROM v
    LEFT JOIN s ON s.id = v.sid LEFT JOIN d ON d.ord = v.ord ORDER BY v.ord
"""


def _array(values: Iterable[object]) -> str:
    """A PostgreSQL array literal of uuids or integers (neither needs quoting): psycopg
    dumps a list element by element in Python, which showed in profiles of big batches."""
    return "{" + ",".join(map(str, values)) + "}"


def _write_postgresql(grouped: dict[uuid.UUID, list[_Delta]]) -> dict[int, int | ServiceError]:
    """Lock the sessions in id order, then write the batch in one statement; both sent in
    one round trip (psycopg's pipeline mode), with server-side parameters: one JSON
    document and two array literals whatever the batch's size, and no per-event model
    object."""
    quote = connection.ops.quote_name
    sessions_table = quote(DurableSession._meta.db_table)
    query = _BATCH_SQL.format(
        sessions=sessions_table,
        messages=quote(Message._meta.db_table),
        events=quote(Event._meta.db_table),
        runs=quote(AgentRun._meta.db_table),
    )
    deltas = [delta for group in grouped.values() for delta in group]
    payloads = [_payload(delta) for delta in deltas]
    types = [_delta_type(delta) for delta in deltas]
    session_ids = list(grouped)
    sids = {session_id: str(session_id) for session_id in session_ids}
    now = timezone.now()
    # The deltas as one JSON document (encoded in C, read by PostgreSQL in C) rather than
    # arrays that psycopg would quote element by element.
    rows: list[dict[str, Any]] = []
    for index, delta in enumerate(deltas):
        row = {
            "ord": index,
            "sid": sids[delta.session_id],
            "mid": delta.message_id,
            "typ": types[index],
            "payload": payloads[index],
        }
        if delta.lease is not None:
            lease = delta.lease
            row.update(run=lease.run_id, worker=lease.worker, attempt=lease.attempt)
        rows.append(row)
    rows_json = json.dumps(rows)
    ids = _array(session_ids)
    params = [
        rows_json,
        RunStatus.RUNNING,
        ids,
        Status.OPEN,
        Control.AI,
        _array({delta.message_id for delta in deltas}),
        MessageState.STREAMING,
        now - UPDATED_AT_RESOLUTION,
        now,
        now,
    ]
    import psycopg  # PostgreSQL only: an optional dependency

    connection.ensure_connection()
    raw = connection.connection
    prepare = ds_settings.PREPARED_STATEMENTS
    # Django turns psycopg's automatic preparation off (prepare_threshold None), which
    # also ignores prepare=True: allow it for the statements below only.
    threshold = raw.prepare_threshold
    if prepare and threshold is None:
        raw.prepare_threshold = _ONLY_WHEN_ASKED
    try:
        # One cursor per statement: in pipeline mode a cursor's fetch returns the first
        # result it holds, and a shared cursor could hold the lock's rows when the server
        # answered the lock before the batch was sent.
        with (
            connection.wrap_database_errors,
            raw.pipeline(),
            psycopg.Cursor(raw) as before,
            psycopg.Cursor(raw) as cursor,
        ):
            if prepare:
                before.execute(_GENERIC_PLAN, prepare=True)
            before.execute(
                f"SELECT id FROM {sessions_table} WHERE id = ANY(%s::uuid[]) "
                "ORDER BY id FOR UPDATE",
                [ids],
                prepare=prepare or None,
            )
            cursor.execute(query, params, prepare=prepare or None)
            outcomes = cursor.fetchall()
    finally:
        raw.prepare_threshold = threshold
    outcome_of: dict[int, int | ServiceError] = {}
    refusals: dict[uuid.UUID, ServiceError] = {}
    frames: dict[uuid.UUID, list[dict[str, Any]]] = {}
    at = wire.iso(now)
    for ord_, seq, session_ok, lease_ok in outcomes:
        delta = deltas[ord_]
        if seq is not None:
            outcome_of[id(delta)] = seq
            # wire.frame's fields, with the time formatted once for the whole batch.
            frames.setdefault(delta.session_id, []).append(
                {"type": types[ord_], "seq": seq, "at": at, "data": payloads[ord_]}
            )
        elif session_ok and not lease_ok and delta.lease is not None:
            outcome_of[id(delta)] = _not_owned(delta.lease)
        elif session_ok:
            outcome_of[id(delta)] = MessageFinished(
                f"message {delta.message_id} is no longer streaming"
            )
        else:
            if delta.session_id not in refusals:
                refusals[delta.session_id] = _refusal(delta.session_id)
            outcome_of[id(delta)] = refusals[delta.session_id]
    # Frames in seq order: the rows come in queue order, which is each session's.
    publish_on_commit([session_wakeup(session_id, f) for session_id, f in frames.items()])
    return outcome_of


def _write_portable(grouped: dict[uuid.UUID, list[_Delta]]) -> dict[int, int | ServiceError]:
    """The batch in three statements of standard SQL (SQLite)."""
    outcome_of: dict[int, int | ServiceError] = {}
    reserved = _reserve(grouped)
    for session_id, deltas in grouped.items():
        if session_id not in reserved:
            refusal = _refusal(session_id)
            for delta in deltas:
                outcome_of[id(delta)] = refusal
    accepted = [d for sid, deltas in grouped.items() if sid in reserved for d in deltas]
    written = _streaming(accepted) if accepted else set()
    held = _held(accepted) if accepted else set()
    rows: list[Event] = []
    unused: dict[uuid.UUID, int] = {}
    now = timezone.now()
    for session_id, last_seq in reserved.items():
        deltas = grouped[session_id]
        seq = last_seq - len(deltas)
        for delta in deltas:
            if delta.lease is not None and delta.lease not in held:
                outcome_of[id(delta)] = _not_owned(delta.lease)
                continue
            if (delta.message_id, session_id) not in written:
                outcome_of[id(delta)] = MessageFinished(
                    f"message {delta.message_id} is no longer streaming"
                )
                continue
            seq += 1
            rows.append(
                Event(
                    session_id=session_id,
                    seq=seq,
                    type=_delta_type(delta),
                    payload=_payload(delta),
                    created_at=now,
                )
            )
            outcome_of[id(delta)] = seq
        if seq != last_seq:
            unused[session_id] = last_seq - seq
    for session_id, count in unused.items():
        # Give the seqs of refused deltas back; the others keep theirs, gapless.
        DurableSession.objects.filter(pk=session_id).update(last_seq=F("last_seq") - count)
    if rows:
        Event.objects.bulk_create(rows)
        publish_on_commit(_wakeups(rows))
    return outcome_of


def _write_holding_connection(
    batch: list[_Delta], idle: Callable[[], bool]
) -> tuple[list[int | ServiceError], list[Wakeup]]:
    """:func:`write_batch` on the database thread, as ``database_sync_to_async`` runs it,
    except that the connection is kept for the next batch while deltas keep coming: taking
    it from the pool again costs a health-check round trip and Django's set-up per batch.
    It goes back once the writer is idle or a batch failed (a connection in doubt is never
    reused), and any other database call of the thread closes it first as usual."""
    try:
        result = collecting(write_batch, batch)
    except BaseException:
        close_old_connections()
        raise
    if idle():
        close_old_connections()
    return result


async def _write_on_db_thread(
    batch: list[_Delta], idle: Callable[[], bool]
) -> tuple[list[int | ServiceError], list[Wakeup]]:
    return await sync_to_async(_write_holding_connection)(batch, idle)


def _check_text(text: object) -> None:
    """Refuse a delta PostgreSQL cannot store (in a JSON payload): it would fail the
    whole group commit, and with it the deltas of every other stream in the batch. The
    runtime scrubs what a model writes before it gets here."""
    if not isinstance(text, str) or not text:
        raise InvalidInput("text", "must be a non-empty string")
    if not storable(text):
        raise InvalidInput("text", "must not contain NUL characters or lone surrogates")


def append_delta(message: Message | int, text: str, *, lease: RunLease | None = None) -> int:
    """Append ``text`` to a streaming reply in a transaction of its own; returns its seq.

    The same statements as the group commit, for synchronous callers (scripts, tests);
    the runtime appends through :data:`delta_writer`. Raises like
    :meth:`DeltaWriter.append`.
    """
    _check_text(text)
    message_id = message.pk if isinstance(message, Message) else message
    session_id = Message.objects.filter(pk=message_id).values_list("session_id", flat=True).first()
    if session_id is None:
        raise MessageFinished(f"message {message_id} does not exist")
    (outcome,) = write_batch([_Delta(session_id, message_id, text, lease=lease)])
    if isinstance(outcome, ServiceError):
        raise outcome
    return outcome


class DeltaWriter:
    """Queues deltas and writes them in group commits, one transaction at a time.

    A publisher task sends each batch's wake-ups and then resolves its futures, while the
    next batch is already being written: publishing never holds up the database, and a
    writer that gets its seq back knows the delta was committed and announced in order.
    """

    def __init__(self) -> None:
        self._queue: list[_Delta] = []
        self._wake: asyncio.Event | None = None
        self._outbox: asyncio.Queue[_Written] | None = None
        self._tasks: tuple[asyncio.Task[None], ...] = ()

    async def append(
        self,
        session_id: uuid.UUID,
        message_id: int,
        text: str,
        *,
        part: tuple[int, str, bool] | None = None,
        lease: RunLease | None = None,
    ) -> int:
        """Append ``text`` to a streaming reply; returns its seq once committed.

        Raises :class:`NotInControl` once a human has taken over, :class:`MessageFinished`
        once the reply was cancelled, :class:`SessionClosed` once the session closed and
        :class:`RunNotOwned` once ``lease`` (the run it writes for) is no longer held: the
        AI never writes again. ``part`` is the part it grows: its primary key, wire id and
        whether it is a text part.
        """
        _check_text(text)
        loop = asyncio.get_running_loop()
        if not self._running(loop):
            for task in self._tasks:
                task.cancel()
            self._wake = asyncio.Event()
            self._outbox = asyncio.Queue()
            self._tasks = (background_task(self._write()), background_task(self._publish()))
        assert self._wake is not None
        future: asyncio.Future[int] = loop.create_future()
        pk, part_id, is_text = part if part is not None else (None, None, True)
        self._queue.append(
            _Delta(session_id, message_id, text, pk, part_id, is_text, lease, future)
        )
        self._wake.set()
        return await future

    def _idle(self) -> bool:
        """Whether no delta waits to be written (read from the database thread); one whose
        writer gave up waiting is not, so the connection is not kept for nothing."""
        return not any(delta.future and not delta.future.done() for delta in self._queue)

    def _running(self, loop: asyncio.AbstractEventLoop) -> bool:
        return bool(self._tasks) and all(
            not task.done() and task.get_loop() is loop for task in self._tasks
        )

    async def _write(self) -> None:
        assert self._wake is not None and self._outbox is not None
        loop = asyncio.get_running_loop()
        started = -math.inf
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                # A busy writer lets the deltas of more streams gather: a transaction
                # costs the same fixed work (and a disk flush) however few deltas it
                # holds. An idle one (no transaction for the interval) writes at once.
                wait = started + ds_settings.GROUP_COMMIT_INTERVAL_MS / 1000 - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                started = loop.time()
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                # A delta whose writer gave up waiting (its run was stopped) is not written.
                batch = [delta for delta in batch if delta.future and not delta.future.done()]
                if not batch:
                    continue
                try:
                    with metrics.timed_group_commit(len(batch)):
                        outcomes, wakeups = await _write_on_db_thread(batch, self._idle)
                except Exception as exc:  # the whole transaction failed
                    self._outbox.put_nowait(_Written(batch, [exc] * len(batch), []))
                    continue
                self._outbox.put_nowait(_Written(batch, outcomes, wakeups))

    async def _publish(self) -> None:
        assert self._outbox is not None
        while True:
            written = await self._outbox.get()
            try:
                await publish_now(written.wakeups)
            except Exception:  # never leave writers waiting: receivers catch up anyway
                logger.exception("wake-ups of %d deltas failed", len(written.batch))
            for delta, outcome in zip(written.batch, written.outcomes, strict=True):
                if delta.future is None or delta.future.done():
                    continue  # its run was cancelled meanwhile
                if isinstance(outcome, BaseException):
                    delta.future.set_exception(outcome)
                else:
                    delta.future.set_result(outcome)


@dataclass
class _Written:
    """A committed (or failed) batch, waiting for its wake-ups to be sent."""

    batch: list[_Delta]
    outcomes: list[int | BaseException]
    wakeups: list[Wakeup]


delta_writer = DeltaWriter()
