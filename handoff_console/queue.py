"""The queue the console shows: sessions as rows, grouped in sections.

One function builds every row (the page, the snapshot and the live updates use it), so
that a row looks the same however it reached the browser.

Sections: ``waiting`` (queued for a human, oldest wait first), ``mine`` (held by the
viewer), ``others`` (held by colleagues), ``ai`` (the AI answers) and ``closed``
(recently closed).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet, Subquery
from django.db.models.functions import Substr
from django.urls import reverse
from django.utils import timezone

from durable_sessions import wire
from durable_sessions.adapter import AnyUser, get_adapter
from durable_sessions.models import (
    Control,
    DurableSession,
    Message,
    MessagePart,
    Participant,
    ParticipantKind,
    PartState,
    Role,
    SessionRating,
    Status,
)
from durable_sessions.service.runs import status_of_run
from handoff_console.adapter import get_console_adapter
from handoff_console.app_settings import console_settings
from handoff_console.assignment import team_of
from handoff_console.permissions import can_view
from handoff_console.reading import with_unread

SECTIONS = ("waiting", "mine", "others", "ai", "closed")
PREVIEW_CHARS = 160
# Queued sessions listed at most (all of them, unless something is badly wrong).
MAX_WAITING = 500


def _annotated(sessions: QuerySet[DurableSession], user: AnyUser) -> QuerySet[DurableSession]:
    """Add what a row shows beyond the session itself, one subquery per column."""
    customer = Participant.objects.filter(session=OuterRef("pk"), kind=ParticipantKind.CUSTOMER)
    # What the customer came with: their first message tells conversations apart.
    first = Message.objects.filter(session=OuterRef("pk"), role=Role.USER).order_by("seq")
    return (
        with_unread(sessions, user)
        .select_related("assigned_operator", "owner")
        .with_last_control()
        .with_last_message(PREVIEW_CHARS)
        .with_latest_run()
        .annotate(
            customer_name=Subquery(customer.values("display_name")[:1]),
            # A tool call waits for a person: a state of its own in the queue.
            awaiting_approval=Exists(
                MessagePart.objects.filter(
                    session=OuterRef("pk"), state=PartState.AWAITING_APPROVAL
                )
            ),
            rating_score=Subquery(
                SessionRating.objects.filter(session=OuterRef("pk")).values("score")[:1]
            ),
            rating_comment=Subquery(
                SessionRating.objects.filter(session=OuterRef("pk")).values("comment")[:1]
            ),
            first_preview=Subquery(
                first.annotate(head=Substr("content", 1, PREVIEW_CHARS)).values("head")[:1]
            ),
        )
    )


def customer_name_of(session: DurableSession) -> str:
    """The customer's name as the console shows it (the adapter has the last word)."""
    participant = (
        Participant.objects.filter(session=session, kind=ParticipantKind.CUSTOMER)
        .values_list("display_name", flat=True)
        .first()
    )
    return get_console_adapter().customer_name(session, participant or "")


def section_of(session: DurableSession, user: AnyUser) -> str:
    """Which section ``session`` belongs in for the viewer ``user``."""
    if session.status == Status.CLOSED:
        return "closed"
    if session.control == Control.QUEUED:
        return "waiting"
    if session.control == Control.HUMAN:
        return "mine" if session.assigned_operator_id == user.pk else "others"
    return "ai"


def row(session: DurableSession, user: AnyUser) -> dict[str, Any]:
    """One session as the console shows it (``session`` comes from :func:`_annotated`)."""
    payload = session.control_payload or {}
    queued = session.status == Status.OPEN and session.control == Control.QUEUED
    operator = session.assigned_operator
    adapter = get_console_adapter()
    return {
        "id": str(session.id),
        "url": reverse("handoff_console:session", args=[session.id]),
        "title": session.title,
        "customer": adapter.customer_name(session, session.customer_name or ""),
        "priority": adapter.priority(session),
        "first_message": session.first_preview or "",
        # The customer's messages the viewer has not seen yet (at most 99).
        "unread": session.unread,
        "control": session.control,
        "status": session.status,
        "section": section_of(session, user),
        "assigned_operator": (
            {"id": operator.pk, "name": get_adapter().display_name(operator)}
            if operator is not None and session.control == Control.HUMAN
            else None
        ),
        # When the session joined the queue: the latest control change put it there.
        "waiting_since": wire.iso(session.control_at) if queued else None,
        # The team it waits for (the handoff's, a transfer's, or the adapter's rule).
        "team": team_of(session, payload) if queued else "",
        "reason": payload.get("reason", ""),
        "summary": payload.get("summary", ""),
        "last_message": (
            {
                "role": session.last_role,
                "preview": session.last_preview or "",
                "at": wire.iso(session.last_at),
            }
            if session.last_role
            else None
        ),
        "agent": (
            "awaiting_approval"
            if session.awaiting_approval
            else status_of_run(
                session.run_status, session.run_message_id, session.run_retry_reason or ""
            )
        ),
        "created_at": wire.iso(session.created_at),
        "updated_at": wire.iso(session.updated_at),
        "closed_at": wire.iso(session.closed_at),
        # The customer's rating after close (CSAT), or None.
        "rating": (
            {"score": session.rating_score, "comment": session.rating_comment or ""}
            if session.rating_score
            else None
        ),
        "last_seq": session.last_seq,
    }


def _visible_rows(sessions: Iterable[DurableSession], user: AnyUser) -> list[dict[str, Any]]:
    return [row(s, user) for s in sessions if can_view(s, user)]


def snapshot(user: AnyUser, only: Iterable[str] | None = None) -> dict[str, Any]:
    """Every section of the queue for ``user``, with the server's clock; ``only`` keeps
    the sessions with those ids (a search's matches)."""
    sessions = (
        DurableSession.objects.all()
        if only is None
        else DurableSession.objects.filter(pk__in=list(only))
    )
    open_ = _annotated(sessions.filter(status=Status.OPEN), user)
    limit = console_settings.SECTION_LIMIT
    closed_limit = console_settings.CLOSED_LIMIT
    human = open_.filter(control=Control.HUMAN)
    querysets = {
        "waiting": open_.filter(control=Control.QUEUED).order_by("control_at", "created_at")[
            :MAX_WAITING
        ],
        "mine": human.filter(assigned_operator_id=user.pk).order_by("-updated_at")[:limit],
        "others": human.exclude(assigned_operator_id=user.pk).order_by("-updated_at")[:limit],
        "ai": open_.filter(control=Control.AI).order_by("-updated_at")[:limit],
        "closed": _annotated(sessions.filter(status=Status.CLOSED), user).order_by("-closed_at")[
            :closed_limit
        ],
    }
    return {
        "type": "snapshot",
        "now": wire.iso(timezone.now()),
        "limits": {"ai": limit, "others": limit, "closed": closed_limit},
        "sections": {name: _visible_rows(qs, user) for name, qs in querysets.items()},
    }


def rows_for(session_ids: Iterable[str], user: AnyUser) -> dict[str, Any]:
    """The current rows of some sessions; ``removed`` lists those gone or not visible."""
    wanted = {str(i) for i in session_ids}
    found = _annotated(DurableSession.objects.filter(pk__in=wanted), user)
    rows = _visible_rows(found, user)
    return {
        "type": "rows",
        "now": wire.iso(timezone.now()),
        "rows": rows,
        "removed": sorted(wanted - {r["id"] for r in rows}),
    }


def counts(snap: dict[str, Any]) -> dict[str, int]:
    """How many rows each section of a snapshot holds."""
    return {name: len(snap["sections"][name]) for name in SECTIONS}
