"""The append primitive: lock a session row, reserve seqs, write events, publish after commit.

Every write of the service runs in one transaction that starts with :func:`lock`:
``UPDATE ... SET last_seq = last_seq + n ... RETURNING`` takes the row lock (no table
lock), reserves the next ``n`` seq values and reads the state the caller then checks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.utils import timezone

from durable_sessions import wire
from durable_sessions.delivery.publish import (
    publish_on_commit,
)
from durable_sessions.errors import (
    InvalidInput,
    SessionClosed,
    SessionNotFound,
)
from durable_sessions.models import (
    DurableSession,
    Event,
    Status,
)

MAX_CLIENT_ID = 64


@dataclass
class Locked:
    """A session row locked by this transaction, with the seq values it reserved."""

    session_id: uuid.UUID
    last_seq: int  # after the reservation
    reserved: int
    control: str
    status: str
    assigned_operator_id: int | None

    @property
    def first_seq(self) -> int:
        return self.last_seq - self.reserved + 1


def lock(session_id: uuid.UUID | str, reserve: int) -> Locked:
    table = connection.ops.quote_name(DurableSession._meta.db_table)
    pk = db_id(session_id)
    # One statement takes the row lock, reserves the seqs and reads the state to check.
    # A writer that only locks (reserve 0) leaves updated_at alone.
    touch, params = (
        (", updated_at = %s", [reserve, timezone.now(), pk]) if reserve else ("", [0, pk])
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_seq = last_seq + %s{touch} WHERE id = %s "
            "RETURNING last_seq, control, status, assigned_operator_id",
            params,
        )
        row = cursor.fetchone()
    if row is None:
        raise SessionNotFound(f"session {session_id} does not exist")
    return Locked(as_uuid(session_id), row[0], reserve, row[1], row[2], row[3])


def lock_session(session_id: uuid.UUID | str) -> Locked:
    """Lock the session row for the rest of the transaction, reserving no seq."""
    return lock(session_id, 0)


def stage(locked: Locked, items: list[tuple[str, dict[str, Any]]]) -> list[Event]:
    """The next events of the locked session, not yet saved (see :func:`emit`)."""
    if len(items) != locked.reserved:
        base = locked.last_seq - locked.reserved
        changes: dict[str, Any] = {"last_seq": base + len(items)}
        if items:
            changes["updated_at"] = timezone.now()
        DurableSession.objects.filter(pk=locked.session_id).update(**changes)
        locked.last_seq, locked.reserved = base + len(items), len(items)
    first = locked.first_seq
    now = timezone.now()
    return [
        Event(
            session_id=locked.session_id, seq=first + i, type=type_, payload=payload, created_at=now
        )
        for i, (type_, payload) in enumerate(items)
    ]


def save_and_publish(rows: list[Event]) -> None:
    """Insert staged events in one statement and publish them, per session, after commit."""
    if not rows:
        return
    Event.objects.bulk_create(rows)
    publish_events(rows)


def publish_events(rows: list[Event]) -> None:
    """Publish saved events, one wake-up per session, once the transaction commits."""
    by_session: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for e in rows:
        by_session.setdefault(e.session_id, []).append(
            wire.frame(e.seq, e.type, e.payload, e.created_at)
        )
    for session_id, frames in by_session.items():
        publish_on_commit(session_id, frames)


def emit(locked: Locked, items: list[tuple[str, dict[str, Any]]]) -> list[Event]:
    """Append ``items`` as the next events of the locked session; publish after commit."""
    rows = stage(locked, items)
    save_and_publish(rows)
    return rows


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


def require_open(locked: Locked) -> None:
    if locked.status != Status.OPEN:
        raise SessionClosed(f"session {locked.session_id} is closed")


def clean_text(field: str, value: Any, *, limit: int, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if not allow_empty and not value.strip():
        raise InvalidInput(field, "must not be empty")
    if len(value) > limit:
        raise InvalidInput(field, f"is longer than {limit} characters")
    if "\x00" in value:
        raise InvalidInput(field, "must not contain NUL characters")
    return value


def clean_client_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_CLIENT_ID:
        raise InvalidInput("client_id", f"must be a non-empty string of at most {MAX_CLIENT_ID}")
    if not value.isprintable():
        raise InvalidInput("client_id", "must contain printable characters only")
    return value
