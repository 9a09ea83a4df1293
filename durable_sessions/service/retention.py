"""Deleting sessions: retention of closed sessions, and the erasure of one customer's data.

Both delete whole sessions in batches of ``RETENTION_BATCH_SIZE``, each batch one short
transaction, so no lock is held for long and an interrupted run simply continues where it
stopped when run again. Deleting a session deletes everything linked to it (participants,
messages and their parts, the event log, runs, handoff records, device grants, and the
console's notes and read marks) through the database's relations. Its live connections
are told after commit and close with 4410; queue views drop its row. Each run leaves one
:class:`~durable_sessions.retention_models.DeletionRecord` that counts what went and keeps
no personal data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from durable_sessions.adapter import AnyUser
from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.publish import publish_on_commit, removed_wakeups
from durable_sessions.errors import InvalidInput, SessionNotFound
from durable_sessions.exports import archive_records
from durable_sessions.models import (
    AgentRun,
    DeviceGrant,
    DurableSession,
    Message,
    MessagePart,
    Status,
)
from durable_sessions.retention_models import DeletionKind, DeletionRecord
from durable_sessions.service.text import with_streaming_text

# Where a deletion was asked, as the audit record says.
VIA_CHOICES = ("admin", "api", "command", "python")
MAX_VISITOR_CHARS = 64

# Receives the archive records of a batch before the batch is deleted; it must have
# stored them durably when it returns (raising stops the run, deleting nothing more).
Archiver = Callable[[list[dict[str, Any]]], None]


@dataclass
class Deleted:
    """What a run deleted so far: sessions and rows per model."""

    sessions: int = 0
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, sessions: int, counts: dict[str, int]) -> None:
        self.sessions += sessions
        self.counts.update({k: v for k, v in counts.items() if v})


def retention_cutoff(*, days: float | None = None, now: datetime | None = None) -> datetime | None:
    """The closing time before which closed sessions are deleted; None when kept for ever
    (``days`` defaults to ``RETAIN_CLOSED_DAYS``)."""
    days = ds_settings.RETAIN_CLOSED_DAYS if days is None else days
    if days <= 0:
        return None
    return (now or timezone.now()) - timedelta(days=days)


def expired_sessions(closed_before: datetime) -> QuerySet[DurableSession]:
    """Closed sessions closed before ``closed_before``, oldest first; never an open one."""
    return DurableSession.objects.filter(_expired(closed_before)).order_by("closed_at", "pk")


def _expired(closed_before: datetime) -> Q:
    return Q(status=Status.CLOSED, closed_at__isnull=False, closed_at__lt=closed_before)


def delete_batch(
    session_ids: Iterable[Any], condition: Q | None = None
) -> tuple[int, dict[str, int]]:
    """Delete the given sessions that still match ``condition``, in one transaction;
    returns the number of sessions and the rows deleted per model."""
    with transaction.atomic():
        chosen = DurableSession.objects.filter(pk__in=list(session_ids))
        if condition is not None:
            chosen = chosen.filter(condition)
        # Lock the rows: a writer of one of these sessions waits, then finds it gone.
        found = list(chosen.select_for_update().values_list("pk", flat=True))
        if not found:
            return 0, {}
        counts: Counter[str] = Counter()
        # Children first: a message's author is PROTECTed, so the sessions' cascade alone
        # would refuse; parts and runs first let the messages go without loading them all.
        for model in (MessagePart, AgentRun, Message, DurableSession):
            key = "pk__in" if model is DurableSession else "session_id__in"
            counts.update(model.objects.filter(**{key: found}).delete()[1])
        for session_id in found:
            publish_on_commit(removed_wakeups(session_id))
    return len(found), dict(counts)


def purge_expired(
    *,
    closed_before: datetime,
    archive: Archiver | None = None,
    batch_size: int | None = None,
    limit: int | None = None,
    via: str = "python",
    archive_name: str = "",
) -> DeletionRecord:
    """Archive (when ``archive`` is given) then delete the sessions closed before
    ``closed_before``, batch by batch, at most ``limit`` sessions; returns the audit record.
    """
    size, via = _batch_size(batch_size), _via(via)
    done = Deleted()
    while limit is None or done.sessions < limit:
        take = size if limit is None else min(size, limit - done.sessions)
        ids = list(expired_sessions(closed_before).values_list("pk", flat=True)[:take])
        if not ids:
            break
        if archive is not None:
            order = {str(pk): n for n, pk in enumerate(ids)}  # oldest closing first
            records = sorted(
                archive_records(
                    DurableSession.objects.filter(pk__in=ids), prepare=with_streaming_text
                ),
                key=lambda r: order[r["session"]["id"]],
            )
            archive(records)
            ids = [r["session"]["id"] for r in records]  # only what was archived
        deleted, counts = delete_batch(ids, _expired(closed_before))
        if not deleted:
            break  # all of them changed meanwhile: asking again would find the same ones
        done.add(deleted, counts)
    return DeletionRecord.objects.create(
        kind=DeletionKind.RETENTION,
        via=via,
        sessions=done.sessions,
        counts=dict(sorted(done.counts.items())),
        closed_before=closed_before,
        archive=archive_name[:255],
    )


def customer_sessions(
    *, user: AnyUser | None = None, visitor: str = ""
) -> QuerySet[DurableSession]:
    """Every session whose customer is ``user`` or the anonymous ``visitor``."""
    mine = Q()
    if user is not None:
        mine |= Q(owner_id=user.pk)
    if visitor:
        mine |= Q(owner__isnull=True, owner_visitor=visitor)
    if not mine:
        return DurableSession.objects.none()
    return DurableSession.objects.filter(mine)


def erase_customer(
    *,
    user: AnyUser | None = None,
    visitor: str = "",
    actor: AnyUser | None = None,
    via: str = "python",
    batch_size: int | None = None,
) -> DeletionRecord:
    """Delete everything of one customer (a user, an anonymous visitor, or both): all
    their sessions with everything linked to them, and the device grants their browser
    redeemed on anybody's session. Returns the audit record, which counts what went.

    Open sessions go too: an erasure does not wait for retention.
    """
    if user is not None and (getattr(user, "pk", None) is None or not user.is_authenticated):
        raise InvalidInput("user", "must be a saved user")
    if not isinstance(visitor, str) or len(visitor) > MAX_VISITOR_CHARS:
        raise InvalidInput(
            "visitor", f"must be a visitor id of at most {MAX_VISITOR_CHARS} characters"
        )
    if visitor and not visitor.isprintable():  # lone surrogates are not printable either
        # No stored visitor id holds these, and PostgreSQL refuses NUL in a query.
        raise InvalidInput("visitor", "must contain printable characters only")
    if user is None and not visitor:
        raise InvalidInput("user", "name the customer: a user or an anonymous visitor id")
    size, via = _batch_size(batch_size), _via(via)
    done = Deleted()
    while True:
        ids = list(
            customer_sessions(user=user, visitor=visitor).values_list("pk", flat=True)[:size]
        )
        if not ids:
            break
        done.add(*delete_batch(ids))  # ids deleted meanwhile are not asked for again
    with transaction.atomic():
        if visitor:
            _, counts = DeviceGrant.objects.filter(redeemed_by_visitor=visitor).delete()
            done.add(0, counts)
        return DeletionRecord.objects.create(
            kind=DeletionKind.ERASURE,
            actor=actor if actor is not None and actor.is_authenticated else None,
            via=via,
            subject="+".join(s for s, given in (("user", user), ("visitor", visitor)) if given),
            sessions=done.sessions,
            counts=dict(sorted(done.counts.items())),
        )


def erase_session_customer(
    session_id: Any, *, actor: AnyUser | None = None, via: str = "python"
) -> DeletionRecord:
    """Erase the customer of one session (the admin's and the API's way to name them)."""
    session = DurableSession.objects.filter(pk=session_id).select_related("owner").first()
    if session is None:
        raise SessionNotFound(f"session {session_id} does not exist")
    return erase_customer(user=session.owner, visitor=session.owner_visitor, actor=actor, via=via)


def _batch_size(value: int | None) -> int:
    size = ds_settings.RETENTION_BATCH_SIZE if value is None else value
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidInput("batch_size", "must be a whole number of at least 1")
    return size


def _via(value: str) -> str:
    if value not in VIA_CHOICES:
        raise InvalidInput("via", f"must be one of {', '.join(VIA_CHOICES)}")
    return value
