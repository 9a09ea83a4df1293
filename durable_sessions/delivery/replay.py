"""Reading the event log: one indexed range query per page."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import connection

from durable_sessions import wire
from durable_sessions.models import DurableSession, Event


def read_events(
    session_id: uuid.UUID, after: int, *, until: int | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Wire frames of the events with ``after < seq <= until``, oldest first, at most ``limit``."""
    query = Event.objects.filter(session_id=session_id, seq__gt=after)
    if until is not None:
        query = query.filter(seq__lte=until)
    rows = query.order_by("seq").values_list("seq", "type", "payload", "created_at")[:limit]
    return [wire.frame(seq, type_, payload, at) for seq, type_, payload, at in rows]


def read_wire(
    session_id: uuid.UUID, after: int, *, until: int | None = None, limit: int = 1000
) -> list[tuple[int, str]]:
    """Like :func:`read_events`, as ``(seq, frame JSON text)`` pairs.

    On PostgreSQL the database writes the JSON: a replay never decodes the payloads only to
    encode them again. The text equals :func:`read_events`' frames once parsed.
    """
    if connection.vendor != "postgresql":
        return [
            (f["seq"], wire.dumps(f))
            for f in read_events(session_id, after, until=until, limit=limit)
        ]
    table = connection.ops.quote_name(Event._meta.db_table)
    bound = "AND seq <= %s " if until is not None else ""
    params: list[object] = [session_id, after, *([until] if until is not None else []), limit]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT seq, json_build_object('type', type, 'seq', seq, 'at', "
            "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
            f"'data', payload)::text FROM {table} "
            f"WHERE session_id = %s AND seq > %s {bound}ORDER BY seq LIMIT %s",
            params,
        )
        return cursor.fetchall()


def latest_seqs(session_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """``last_seq`` of each session, in chunks to keep the IN lists small."""
    found: dict[uuid.UUID, int] = {}
    for start in range(0, len(session_ids), 500):
        chunk = session_ids[start : start + 500]
        found.update(DurableSession.objects.filter(pk__in=chunk).values_list("pk", "last_seq"))
    return found
