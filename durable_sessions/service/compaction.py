"""Compaction: a finished reply's deltas and part events folded into its final text.

A reply of 2,000 deltas leaves 2,000 rows in the log; once it has ended (and
``COMPACT_AFTER`` has passed, or ``manage.py compact_events`` is run) they are not needed
to show it, only to replay it as it streamed. Compaction replaces each run of consecutive
such events (``message.delta``, ``part.delta``, ``part.started``, ``part.ended``,
``tool.updated`` of that message) by one ``message.snapshot`` event: the message whole, at
the seq of the run's *last* event, with ``from_seq`` the run's first. Seqs never change;
the rows in between are deleted. A reader that resumes after any seq inside a run gets the
snapshot next (its seq is above every seq of the run), so the resume stays exact; the
seqs a snapshot covers are not a gap (docs/protocol.md). Events of others that came in
between (a customer's message, a takeover) split the runs and stay where they were.

A streaming reply is never compacted: readers assemble it from its deltas (:mod:`.text`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from durable_sessions import wire
from durable_sessions.models import DurableSession, Event, Message, MessageState, Role

logger = logging.getLogger(__name__)

# The events of a reply that its snapshot replaces.
FOLDED = frozenset(
    {wire.MESSAGE_DELTA, wire.PART_DELTA, wire.PART_STARTED, wire.PART_ENDED, wire.TOOL_UPDATED}
)
# The events that end a reply: nothing of it comes after them.
ENDINGS = frozenset({wire.MESSAGE_COMPLETED, wire.MESSAGE_CANCELLED, wire.MESSAGE_FAILED})
# Log rows read per round trip while looking for a reply's events.
_CHUNK = 500


@dataclass(frozen=True)
class Compacted:
    """What a compaction did: replies compacted, snapshots written, rows deleted."""

    messages: int = 0
    snapshots: int = 0
    deleted: int = 0

    def __add__(self, other: Compacted) -> Compacted:
        return Compacted(
            self.messages + other.messages,
            self.snapshots + other.snapshots,
            self.deleted + other.deleted,
        )


def due(
    *, older_than: datetime, limit: int, session_id: uuid.UUID | str | None = None
) -> list[int]:
    """Ids of finished replies, not yet compacted, that ended before ``older_than``."""
    query = Message.objects.filter(
        role=Role.ASSISTANT, compacted_at__isnull=True, completed_at__lte=older_than
    ).exclude(state=MessageState.STREAMING)
    if session_id is not None:
        query = query.filter(session_id=session_id)
    return list(query.order_by("completed_at", "pk").values_list("pk", flat=True)[:limit])


def compact_due(
    *,
    after_seconds: float,
    limit: int = 500,
    session_id: uuid.UUID | str | None = None,
) -> Compacted:
    """Compact up to ``limit`` replies that ended at least ``after_seconds`` ago, each in
    a transaction of its own."""
    older_than = timezone.now() - timedelta(seconds=after_seconds)
    total = Compacted()
    for message_id in due(older_than=older_than, limit=limit, session_id=session_id):
        total += compact_message(message_id)
    return total


def _runs(rows: list[tuple[int, int, str, Any]], message_id: int) -> list[list[tuple[int, int]]]:
    """The runs of consecutive seqs of the reply's foldable events, as (pk, seq) lists."""
    runs: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    for pk, seq, type_, payload in rows:
        mine = isinstance(payload, dict) and payload.get("message_id") == message_id
        if mine and type_ in FOLDED:
            if current and seq != current[-1][1] + 1:
                runs.append(current)
                current = []
            current.append((pk, seq))
            continue
        if current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def _reply_events(message: Message) -> list[tuple[int, int, str, Any]]:
    """The log rows after the reply's creation up to its ending event, in seq order."""
    # Replies stream one at a time in a session: the next reply's creation bounds this one.
    bound = (
        Message.objects.filter(session_id=message.session_id, role=Role.ASSISTANT)
        .filter(seq__gt=message.seq)
        .order_by("seq")
        .values_list("seq", flat=True)
        .first()
    )
    query = Event.objects.filter(session_id=message.session_id, seq__gt=message.seq)
    if bound is not None:
        query = query.filter(seq__lt=bound)
    rows: list[tuple[int, int, str, Any]] = []
    for row in (
        query.order_by("seq")
        .values_list("pk", "seq", "type", "payload")
        .iterator(chunk_size=_CHUNK)
    ):
        rows.append(row)
        payload = row[3]
        if row[2] in ENDINGS and isinstance(payload, dict):
            if payload.get("message_id") == message.pk:
                break
    return rows


def compact_message(message_id: int) -> Compacted:
    """Fold a finished reply's deltas and part events into ``message.snapshot`` events.

    Nothing happens to a reply that still streams or was compacted already. The session
    row is locked, as by every writer of the session: two compactions of one reply never
    interleave."""
    session_id = Message.objects.filter(pk=message_id).values_list("session_id", flat=True).first()
    if session_id is None:
        return Compacted()
    with transaction.atomic():
        DurableSession.objects.select_for_update().filter(pk=session_id).values_list(
            "pk", flat=True
        ).first()
        message = (
            Message.objects.select_related("author")
            .prefetch_related(wire.parts_prefetch())
            .filter(pk=message_id)
            .first()
        )
        if (
            message is None
            or message.state == MessageState.STREAMING
            or message.compacted_at is not None
        ):
            return Compacted()
        runs = _runs(_reply_events(message), message.pk)
        whole = wire.message_data(message)
        deleted: list[int] = []
        for run in runs:
            last_pk, _ = run[-1]
            Event.objects.filter(pk=last_pk).update(
                type=wire.MESSAGE_SNAPSHOT, payload={"message": whole, "from_seq": run[0][1]}
            )
            deleted.extend(pk for pk, _ in run[:-1])
        for start in range(0, len(deleted), _CHUNK):
            Event.objects.filter(pk__in=deleted[start : start + _CHUNK]).delete()
        Message.objects.filter(pk=message.pk).update(compacted_at=timezone.now())
    return Compacted(1, len(runs), len(deleted))


def is_compacted(session_id: uuid.UUID | str) -> bool:
    """Whether any reply of the session was compacted."""
    return Message.objects.filter(session_id=session_id, compacted_at__isnull=False).exists()
