"""Operators' availability: online, away or offline, as they set it in the console, and
offline in any case when none of their console pages has beaten for
``OFFLINE_AFTER_SECONDS`` (a closed laptop needs no one to press a button).

Each console page's live feed beats every ``REFRESH_SECONDS``. A choice an operator makes
is pushed to every console feed once stored (colleagues' lists change without a reload);
a page that merely stops beating shows as offline on the feeds' next refresh.
Availability is state of the console, not of any one session, so it is never an event of
a session's log.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from durable_sessions.adapter import AnyUser, get_adapter
from durable_sessions.delivery.groups import activity_group
from durable_sessions.errors import InvalidInput
from durable_sessions.models import Control, DurableSession, Status
from handoff_console.app_settings import console_settings
from handoff_console.models import Availability, OperatorAvailability, Team
from handoff_console.permissions import operator_choices

logger = logging.getLogger(__name__)


def set_availability(user: AnyUser, status: Any) -> str:
    """Store what ``user`` chose (``online``, ``away`` or ``offline``); their page just
    spoke, so it counts as a beat too. Returns the status now in effect."""
    if not isinstance(status, str) or status not in Availability.values:
        raise InvalidInput("availability", f"must be one of {', '.join(Availability.values)}")
    OperatorAvailability.objects.update_or_create(
        user=user, defaults={"status": status, "seen_at": timezone.now()}
    )
    transaction.on_commit(announce_change)
    return status


# The consumer method of the console feed that re-reads the operators' list.
CHANGED_MESSAGE = {"type": "operators.changed"}


def announce_change() -> None:
    """Wake every console feed up to send colleagues' availability again. Only a wake-up:
    a lost one is corrected by the feeds' next refresh, which reads the database."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(activity_group(), CHANGED_MESSAGE)
    except Exception:  # the choice is stored; refreshes will show it
        logger.warning("could not push an availability change to the console feeds", exc_info=True)


def beat(user: AnyUser) -> None:
    """One of ``user``'s console pages is connected (a new operator starts online)."""
    now = timezone.now()
    if not OperatorAvailability.objects.filter(user=user).update(seen_at=now):
        OperatorAvailability.objects.get_or_create(user=user, defaults={"seen_at": now})


def effective(record: OperatorAvailability | None, now: datetime | None = None) -> str:
    """The availability in force: the chosen one, unless no page beat lately."""
    if record is None or record.seen_at is None:
        return Availability.OFFLINE
    limit = timedelta(seconds=console_settings.OFFLINE_AFTER_SECONDS)
    if (now or timezone.now()) - record.seen_at > limit:
        return Availability.OFFLINE
    return record.status


def availability_of(user: AnyUser) -> str:
    return effective(OperatorAvailability.objects.filter(user=user).first())


def open_load() -> dict[int, int]:
    """Open sessions each operator holds, by user id."""
    held = (
        DurableSession.objects.filter(status=Status.OPEN, control=Control.HUMAN)
        .exclude(assigned_operator=None)
        .values("assigned_operator")
        .annotate(n=Count("pk"))
    )
    return {row["assigned_operator"]: row["n"] for row in held}


def team_members() -> dict[str, set[int]]:
    """Each team's members' user ids, by the team's slug."""
    teams: dict[str, set[int]] = {team.slug: set() for team in Team.objects.all()}
    for slug, user_id in Team.members.through.objects.values_list("team__slug", "user_id"):
        teams[slug].add(user_id)
    return teams


def teams() -> list[dict[str, Any]]:
    return [{"slug": t.slug, "name": t.name} for t in Team.objects.all()]


def operators() -> list[dict[str, Any]]:
    """Every operator with their availability, teams and open conversations: what the
    console shows colleagues, and what transfers offer."""
    users = operator_choices(exclude=None)
    records = {r.user_id: r for r in OperatorAvailability.objects.filter(user__in=users)}
    load = open_load()
    membership: dict[int, list[str]] = {}
    for slug, members in team_members().items():
        for user_id in members:
            membership.setdefault(user_id, []).append(slug)
    now = timezone.now()
    adapter = get_adapter()
    return [
        {
            "id": user.pk,
            "name": adapter.display_name(user),
            "availability": effective(records.get(user.pk), now),
            "open": load.get(user.pk, 0),
            "teams": sorted(membership.get(user.pk, [])),
        }
        for user in users
    ]


def recently_seen(now: datetime | None = None) -> Q:
    """A filter of the availability rows whose pages beat within OFFLINE_AFTER_SECONDS."""
    limit = (now or timezone.now()) - timedelta(seconds=console_settings.OFFLINE_AFTER_SECONDS)
    return Q(seen_at__gte=limit)


def with_operators(snapshot: dict[str, Any], user: AnyUser) -> dict[str, Any]:
    """A queue snapshot with colleagues' availability and the viewer's (as the feed and
    the pages send it)."""
    snapshot["operators"] = operators()
    snapshot["me"] = {"availability": availability_of(user)}
    return snapshot
