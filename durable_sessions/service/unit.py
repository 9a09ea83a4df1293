"""The unit of work: every write to a session goes through one :class:`SessionWrite`.

::

    with session_write(session_id) as w:
        w.require_open()
        w.set(control=Control.QUEUED)
        w.append(wire.CONTROL_CHANGED, {...})

Entering locks the session row once per transaction and reads the state the caller
checks. While the unit is open, appends take the next ``seq`` values in memory (the lock
keeps every other writer of the session out), and messages and audit rows wait in memory
too. Leaving the outermost unit writes everything: the new messages and audit rows, one
``UPDATE`` of the session row (``last_seq``, ``updated_at`` and any state changed with
:meth:`SessionWrite.set`), and the events in one ``INSERT``; after commit, one wake-up
goes to the session's connections. A unit opened again for the same session inside the
same transaction is the same unit: service operations compose without locking twice.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.dispatch import Signal
from django.utils import timezone

from durable_sessions import wire
from durable_sessions.delivery.publish import (
    Wakeup,
    activity_wakeup,
    publish_on_commit,
    run_wakeup,
    session_wakeup,
)
from durable_sessions.errors import SessionClosed, SessionNotFound
from durable_sessions.models import (
    DurableSession,
    Event,
    HandoffRecord,
    Message,
    Participant,
    ParticipantKind,
    Status,
)

logger = logging.getLogger(__name__)

# A payload, or a function that makes it once the unit's rows are saved (a message's
# ``message.created`` names the message's id, which exists only after its insert).
Payload = dict[str, Any] | Callable[[], dict[str, Any]]

# Fields of the session row that :meth:`SessionWrite.set` may change.
_STATE_FIELDS = frozenset({"control", "status", "assigned_operator_id", "closed_at"})


class SessionWrite:
    """The writes of one transaction to one session, applied when the unit closes."""

    def __init__(
        self,
        session_id: uuid.UUID,
        last_seq: int,
        control: str,
        status: str,
        assigned_operator_id: int | None,
    ) -> None:
        self.session_id = session_id
        self.last_seq = last_seq
        self.control = control
        self.status = status
        self.assigned_operator_id = assigned_operator_id
        self._saved_seq = last_seq
        self._events: list[tuple[int, str, Payload]] = []
        self._messages: list[Message] = []
        self._records: list[HandoffRecord] = []
        self._changes: dict[str, Any] = {}
        self._ephemeral: list[tuple[dict[str, Any], bool]] = []
        self._runs: list[int] = []
        self._participants: list[Participant] | None = None
        self._after_rows: list[Callable[[], None]] = []
        self._signals: list[tuple[Signal, dict[str, Any]]] = []

    # --- the state read under the lock ---------------------------------------------------

    def require_open(self) -> None:
        if self.status != Status.OPEN:
            raise SessionClosed(f"session {self.session_id} is closed")

    def set(self, **changes: Any) -> None:
        """Change state columns of the session row (written with the unit's one UPDATE)."""
        unknown = set(changes) - _STATE_FIELDS
        if unknown:
            raise TypeError(f"cannot set {', '.join(sorted(unknown))} on a session")
        for name, value in changes.items():
            setattr(self, name, value)
        self._changes.update(changes)

    def participants(self) -> list[Participant]:
        """The session's participants, read once per unit."""
        if self._participants is None:
            self._participants = list(Participant.objects.filter(session_id=self.session_id))
        return self._participants

    def participant(self, kind: str, user_id: int | None = None) -> Participant | None:
        for p in self.participants():
            if p.kind == kind and (kind != ParticipantKind.OPERATOR or p.user_id == user_id):
                return p
        return None

    def add_participant(self, participant: Participant) -> None:
        """Note a participant this unit created (it is saved already: messages point to it)."""
        self.participants().append(participant)

    # --- what the unit writes ------------------------------------------------------------

    def append(self, type_: str, payload: Payload) -> int:
        """Append an event to the session's log; returns its seq."""
        self.last_seq += 1
        self._events.append((self.last_seq, type_, payload))
        return self.last_seq

    def add_message(self, message: Message, extra: dict[str, Any] | None = None) -> int:
        """Store ``message`` with the ``message.created`` event that announces it; returns
        that event's seq, which is also the message's. ``extra``: fields of the message in
        that event only (a reply's link to its run)."""
        message.session_id = self.session_id
        seq = self.append(
            wire.MESSAGE_CREATED,
            lambda: {"message": {**wire.message_data(message), **(extra or {})}},
        )
        message.seq = seq
        self._messages.append(message)
        return seq

    def record(self, record: HandoffRecord) -> None:
        """Store an audit row of a control transition (saved with the unit)."""
        record.session_id = self.session_id
        self._records.append(record)

    def ephemeral(self, frame: dict[str, Any], *, operators_only: bool = False) -> None:
        """A state frame that is not in the log, sent with the unit's wake-up."""
        self._ephemeral.append((frame, operators_only))

    def after_rows(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` once the unit's messages are saved (it may write rows that point to
        them, and add ephemeral frames or runs to the unit's wake-ups)."""
        self._after_rows.append(fn)

    def signal(self, signal: Signal, **kwargs: Any) -> None:
        """Send ``signal`` (see :mod:`durable_sessions.signals`) once the unit commits."""
        self._signals.append((signal, kwargs))

    def announce_run(self, run_id: int) -> None:
        """Tell the workers about a new run once the unit is committed."""
        self._runs.append(run_id)

    # --- applying it ---------------------------------------------------------------------

    def _save(self) -> None:
        now = timezone.now()
        if self._messages:
            Message.objects.bulk_create(self._messages)
        if self._records:
            HandoffRecord.objects.bulk_create(self._records)
        for fn in self._after_rows:
            fn()
        if self.last_seq != self._saved_seq or self._changes:
            fields: dict[str, Any] = {"last_seq": self.last_seq, **self._changes}
            if self.last_seq != self._saved_seq:
                fields["updated_at"] = now
            DurableSession.objects.filter(pk=self.session_id).update(**fields)
        events = [
            Event(session_id=self.session_id, seq=seq, type=type_, payload=_resolve(payload))
            for seq, type_, payload in self._events
        ]
        if events:
            Event.objects.bulk_create(events)
        publish_on_commit(self._wakeups(events, now))
        for signal, kwargs in self._signals:
            transaction.on_commit(partial(send_signal, signal, self.session_id, kwargs))
        self._saved_seq = self.last_seq
        self._events, self._messages, self._records, self._changes = [], [], [], {}
        self._ephemeral, self._runs, self._after_rows, self._signals = [], [], [], []

    def _wakeups(self, events: list[Event], now: datetime) -> list[Wakeup]:
        frames = [wire.frame(e.seq, e.type, e.payload, e.created_at or now) for e in events]
        wakeups: list[Wakeup] = []
        if frames or self._ephemeral:
            wakeups.append(session_wakeup(self.session_id, frames, self._ephemeral))
        activity = activity_wakeup(self.session_id, frames) if frames else None
        if activity is not None:
            wakeups.append(activity)
        wakeups.extend(run_wakeup(run_id) for run_id in self._runs)
        return wakeups


def send_signal(signal: Signal, session_id: uuid.UUID, kwargs: dict[str, Any]) -> None:
    """Send a committed change's signal; a failing receiver is logged, never raised."""
    for receiver, result in signal.send_robust(DurableSession, session_id=session_id, **kwargs):
        if isinstance(result, Exception):
            logger.error("signal receiver %r failed", receiver, exc_info=result)


def _resolve(payload: Payload) -> dict[str, Any]:
    return payload() if callable(payload) else payload


# The units open in this thread's transaction, by session.
_open = threading.local()


def _units() -> dict[uuid.UUID, SessionWrite]:
    units = getattr(_open, "units", None)
    if units is None:
        units = _open.units = {}
    return units


@contextmanager
def session_write(session_id: uuid.UUID | str) -> Iterator[SessionWrite]:
    """Open the unit of work of one session (see the module docstring).

    Raises :class:`SessionNotFound` when the session does not exist. An exception inside
    the block writes nothing (the transaction, or the caller's savepoint, rolls back).
    """
    sid = as_uuid(session_id)
    units = _units()
    unit = units.get(sid)
    if unit is not None:
        # Inside the same transaction: the lock is held and the writes are collected.
        with transaction.atomic(savepoint=False):
            yield unit
        return
    with transaction.atomic():
        unit = _lock(sid)
        units[sid] = unit
        try:
            yield unit
        finally:
            del units[sid]
        unit._save()


@contextmanager
def new_session_write(
    session: DurableSession, participants: list[Participant]
) -> Iterator[SessionWrite]:
    """The unit of a session row this transaction has just inserted (locked already)."""
    with transaction.atomic():
        unit = SessionWrite(session.pk, session.last_seq, session.control, session.status, None)
        unit._participants = list(participants)
        units = _units()
        units[session.pk] = unit
        try:
            yield unit
        finally:
            del units[session.pk]
        unit._save()


def _lock(session_id: uuid.UUID) -> SessionWrite:
    table = connection.ops.quote_name(DurableSession._meta.db_table)
    columns = "last_seq, control, status, assigned_operator_id"
    if connection.features.has_select_for_update:
        sql = f"SELECT {columns} FROM {table} WHERE id = %s FOR UPDATE"
    else:
        # SQLite has no row locks: a no-op write takes the database's write lock now, so
        # that two writers cannot both read the same last_seq.
        sql = f"UPDATE {table} SET last_seq = last_seq WHERE id = %s RETURNING {columns}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [db_id(session_id)])
        row = cursor.fetchone()
    if row is None:
        raise SessionNotFound(f"session {session_id} does not exist")
    return SessionWrite(session_id, *row)


def as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise SessionNotFound(f"session {value} does not exist") from None


def db_id(session_id: uuid.UUID | str) -> object:
    """A session id as raw SQL takes it (a UUID on PostgreSQL, hex text on SQLite)."""
    return DurableSession._meta.pk.get_db_prep_value(as_uuid(session_id), connection)
