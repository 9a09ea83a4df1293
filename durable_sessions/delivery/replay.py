"""Reading the event log: one indexed range query per page."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import connection
from django.db.models import TextField
from django.db.models.functions import Cast, Length

from durable_sessions import wire
from durable_sessions.models import DurableSession, Event

# Rows fetched per round trip when a page is bounded in size.
_CHUNK = 50
# What the envelope (type, seq, at) adds to a payload, in characters.
_ENVELOPE_CHARS = 80


def read_events(
    session_id: uuid.UUID, after: int, *, until: int | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Wire frames of the events with ``after < seq <= until``, oldest first, at most ``limit``."""
    query = Event.objects.filter(session_id=session_id, seq__gt=after)
    if until is not None:
        query = query.filter(seq__lte=until)
    rows = query.order_by("seq").values_list("seq", "type", "payload", "created_at")[:limit]
    return [wire.frame(seq, type_, payload, at) for seq, type_, payload, at in rows]


def read_events_page(
    session_id: uuid.UUID,
    after: int,
    *,
    until: int | None = None,
    limit: int = 1000,
    max_chars: int,
) -> tuple[list[dict[str, Any]], bool]:
    """Like :func:`read_events`, stopping before the event that would take the page past
    ``max_chars`` characters of JSON (the first event always comes); and whether more
    events follow (in range) after the page.

    Rows are fetched in small chunks, so that those past the budget never reach memory.
    """
    query = Event.objects.filter(session_id=session_id, seq__gt=after)
    if until is not None:
        query = query.filter(seq__lte=until)
    rows = (
        query.order_by("seq")
        .annotate(size=Length(Cast("payload", TextField())))
        .values_list("seq", "type", "payload", "created_at", "size")[: limit + 1]
    )
    frames: list[dict[str, Any]] = []
    total = 0
    for seq, type_, payload, at, size in rows.iterator(chunk_size=_CHUNK):
        total += (size or 0) + _ENVELOPE_CHARS
        if len(frames) == limit or (frames and total > max_chars):
            return frames, True
        frames.append(wire.frame(seq, type_, payload, at))
    return frames, False


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
    with connection.cursor() as cursor:
        cursor.execute(*_wire_query(session_id, after, until, limit))
        return cursor.fetchall()


def read_wire_page(
    session_id: uuid.UUID,
    after: int,
    *,
    until: int | None = None,
    limit: int = 1000,
    max_chars: int,
) -> tuple[list[tuple[int, str]], bool]:
    """Like :func:`read_wire`, bounded to about ``max_chars`` characters as
    :func:`read_events_page` is; and whether more events follow after the page."""
    if connection.vendor != "postgresql":
        frames, more = read_events_page(
            session_id, after, until=until, limit=limit, max_chars=max_chars
        )
        return [(f["seq"], wire.dumps(f)) for f in frames], more
    sql, params = _wire_query(session_id, after, until, limit + 1)
    # The database drops the rows past the budget: they never reach this process.
    sql = (
        "SELECT seq, text, available FROM (SELECT seq, text, "
        "sum(char_length(text)) OVER (ORDER BY seq) AS total, "
        "row_number() OVER (ORDER BY seq) AS n, count(*) OVER () AS available "
        f"FROM ({sql}) AS page) AS sized "
        "WHERE n = 1 OR (n <= %s AND total <= %s) ORDER BY seq"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit, max_chars])
        found = cursor.fetchall()
    # More follow when the page was cut: by the budget, or at ``limit`` of ``limit + 1``.
    more = bool(found) and found[0][2] > len(found)
    return [(seq, text) for seq, text, _ in found], more


def _wire_query(
    session_id: uuid.UUID, after: int, until: int | None, limit: int
) -> tuple[str, list[object]]:
    table = connection.ops.quote_name(Event._meta.db_table)
    bound = "AND seq <= %s " if until is not None else ""
    params: list[object] = [session_id, after, *([until] if until is not None else []), limit]
    # The JSON is built over the page only: under a plan that sorts the session's rows
    # (a bitmap scan), building it in the same SELECT would encode every later event.
    sql = (
        "SELECT seq, json_build_object('type', type, 'seq', seq, 'at', "
        "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
        "'data', payload)::text AS text FROM ("
        f"SELECT seq, type, created_at, payload FROM {table} "
        f"WHERE session_id = %s AND seq > %s {bound}ORDER BY seq LIMIT %s) AS e ORDER BY seq"
    )
    return sql, params


def latest_seqs(session_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """``last_seq`` of each session, in chunks to keep the IN lists small."""
    found: dict[uuid.UUID, int] = {}
    for start in range(0, len(session_ids), 500):
        chunk = session_ids[start : start + 500]
        found.update(DurableSession.objects.filter(pk__in=chunk).values_list("pk", "last_seq"))
    return found
