"""Auto-assignment of queued sessions, and release of claims whose operator went away.

A pass (:func:`run_pass`) gives each queued session, oldest wait first, to an available
operator (online, page connected) of its team who holds fewer than ``CAPACITY`` open
conversations: ``least_busy`` picks the one with the fewest, ``round_robin`` the one
longest without an assignment. Each assignment is a take-over through the session service
("assigned automatically"), made while the operator's availability row is locked and their
load re-counted, so that passes running at once in several processes never exceed the
capacity, and of two passes giving the same session exactly one wins.

Then (when ``RELEASE_AFTER_SECONDS`` is set) sessions held by an operator offline for longer go back
to the queue, for their team. Every console feed runs a pass on each refresh; the
``console_assign`` command runs one from cron when no console is open.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from durable_sessions import service
from durable_sessions.errors import ServiceError
from durable_sessions.models import Control, DurableSession, Event, Status
from handoff_console.adapter import get_console_adapter
from handoff_console.app_settings import console_settings
from handoff_console.availability import open_load, recently_seen, team_members
from handoff_console.models import Availability, OperatorAvailability
from handoff_console.permissions import is_operator

logger = logging.getLogger(__name__)

ASSIGNED_REASON = "assigned automatically"
# Queued sessions one pass looks at, oldest first.
MAX_PER_PASS = 200
_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass
class PassResult:
    """What one pass did: (session id, user id) assignments and released session ids."""

    assigned: list[tuple[str, int]] = field(default_factory=list)
    released: list[str] = field(default_factory=list)


def team_of(session: DurableSession, payload: dict[str, Any] | None) -> str:
    """The team a queued session waits for: its queue event's, else the adapter's rule."""
    team = (payload or {}).get("team")
    if isinstance(team, str) and team:
        return team
    return get_console_adapter().team_for(session) or ""


def run_pass() -> PassResult:
    """Assign what can be assigned, then release what was left too long."""
    result = PassResult()
    if console_settings.AUTO_ASSIGN != "off":
        result.assigned = assign_queued()
    if console_settings.RELEASE_AFTER_SECONDS:
        result.released = release_absent()
    return result


def _available() -> dict[int, OperatorAvailability]:
    rows = OperatorAvailability.objects.filter(recently_seen(), status=Availability.ONLINE)
    found = {r.user_id: r for r in rows.select_related("user")}
    return {pk: r for pk, r in found.items() if r.user.is_active and is_operator(r.user)}


def assign_queued() -> list[tuple[str, int]]:
    """Give queued sessions to available operators within their capacity."""
    available = _available()
    if not available:
        return []
    queued = list(
        DurableSession.objects.filter(status=Status.OPEN, control=Control.QUEUED)
        .select_related("owner")
        .with_last_control()
        .order_by("control_at", "created_at")[:MAX_PER_PASS]
    )
    load = open_load()
    teams = team_members()
    capacity = console_settings.CAPACITY
    done: list[tuple[str, int]] = []
    for session in queued:
        team = team_of(session, session.control_payload)
        # A team the console does not know routes to everyone rather than to no one.
        members = teams.get(team) if team else None
        candidates = [
            r
            for pk, r in available.items()
            if load.get(pk, 0) < capacity and (members is None or pk in members)
        ]
        if not candidates:
            continue
        for record in sorted(candidates, key=lambda r: _rank(r, load)):
            assigned_at = _assign(session, record.user_id)
            if assigned_at is not None:
                load[record.user_id] = load.get(record.user_id, 0) + 1
                record.last_assigned_at = assigned_at
                done.append((str(session.pk), record.user_id))
                break
    return done


def _rank(record: OperatorAvailability, load: dict[int, int]) -> tuple[Any, ...]:
    last = record.last_assigned_at or _EPOCH
    if console_settings.AUTO_ASSIGN == "least_busy":
        return (load.get(record.user_id, 0), last, record.user_id)
    return (last, record.user_id)


def _assign(session: DurableSession, user_id: int) -> datetime | None:
    """Take the session over for the operator, if they are still under capacity; when
    it was assigned, the time."""
    with transaction.atomic():
        # Serializes the passes of every process for this operator: the load read next
        # includes whatever another pass just gave them.
        record = (
            OperatorAvailability.objects.select_for_update()
            .select_related("user")
            .filter(user_id=user_id)
            .first()
        )
        if record is None or open_load().get(user_id, 0) >= console_settings.CAPACITY:
            return None
        try:
            service.take_over(session.pk, record.user, reason=ASSIGNED_REASON)
        except ServiceError as exc:  # claimed or closed meanwhile: the next one
            logger.debug("auto-assignment of %s skipped: %s", session.pk, exc)
            return None
        record.last_assigned_at = timezone.now()
        record.save(update_fields=["last_assigned_at"])
        return record.last_assigned_at


def release_absent() -> list[str]:
    """Put back in the queue the sessions held by operators offline for too long."""
    limit = timezone.now() - timedelta(
        seconds=console_settings.OFFLINE_AFTER_SECONDS + console_settings.RELEASE_AFTER_SECONDS
    )
    # Only operators the console has seen and lost: one who never opened it (e.g. who
    # works through the API) is not the console's to release.
    absent = OperatorAvailability.objects.filter(seen_at__lt=limit).values("user_id")
    held = DurableSession.objects.filter(
        status=Status.OPEN, control=Control.HUMAN, assigned_operator__in=absent
    ).select_related("owner")
    released = []
    for session in held[:MAX_PER_PASS]:
        team = _team_before_claim(session)
        try:
            if service.release_claim(
                session.pk,
                session.assigned_operator_id,
                reason="the operator went offline",
                team=team,
            ):
                released.append(str(session.pk))
        except ServiceError as exc:
            logger.debug("release of %s skipped: %s", session.pk, exc)
    return released


def _team_before_claim(session: DurableSession) -> str:
    """The team of the queue entry the session was claimed from, if any."""
    queued = (
        Event.objects.filter(session=session, type="control.changed", payload__control="queued")
        .order_by("-seq")
        .values_list("payload", flat=True)
        .first()
    )
    try:
        return team_of(session, queued)
    except Exception:  # a host rule that fails must not stop the release of others
        logger.exception("team of %s unknown", session.pk)
        return ""
