"""Console pages: the live queue and one session's view."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import Http404
from django.urls import reverse
from django.utils.translation import gettext_lazy, ngettext_lazy
from django.views.generic import TemplateView

from durable_sessions.adapter import get_adapter
from durable_sessions.models import DurableSession
from handoff_console import availability, queue
from handoff_console.brief import brief
from handoff_console.canned import replies_for
from handoff_console.context import customer_profile, previous_conversations
from handoff_console.notes import notes_for
from handoff_console.permissions import OperatorRequiredMixin, can_view, operator_choices
from handoff_console.search import QueueFilters, matching_sessions

FEED_PATH = "/ws/console/"
SESSION_WS_PATH = "/ws/sessions/"
# The session page's actions -> their route names in ``durable_sessions.urls``.
API_ROUTES = {
    "take_over": "take-over",
    "hand_back": "hand-back",
    "transfer": "transfer",
    "close": "close",
    "messages": "messages",
}


# Placeholder of an approval id in the approval URL given to the page.
APPROVAL_ID = "approval-id"
WAITED_CHOICES = [
    (0, gettext_lazy("any time")),
    *((n, ngettext_lazy("%(count)d min", "%(count)d min", n) % {"count": n}) for n in (1, 5, 15)),
    (60, gettext_lazy("1 hour")),
]


class QueueView(OperatorRequiredMixin, TemplateView):
    """The queue: waiting for a human, mine, colleagues', the AI's and recently closed.

    The page starts from a snapshot rendered into it, then follows the live feed.
    """

    template_name = "handoff_console/queue.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        filters = QueueFilters.from_query(self.request.GET)
        matches = matching_sessions(filters.q) if filters.q else None
        snapshot = availability.with_operators(
            queue.snapshot(self.request.user, only=matches), self.request.user
        )
        context.update(
            snapshot=snapshot,
            teams=availability.teams(),
            counts=queue.counts(snapshot),
            filters=filters,
            operators=operator_choices(exclude=None),
            waited_choices=WAITED_CHOICES
            + (
                [(filters.waited, f"{filters.waited} min")]
                if filters.waited not in dict(WAITED_CHOICES)
                else []
            ),
            config={
                "feed": FEED_PATH,
                "me": self.request.user.pk,
                "filters": filters.as_dict(),
                # While searching, the live feed's rows are shown only for these.
                "matches": matches,
            },
        )
        return context


class SessionView(OperatorRequiredMixin, TemplateView):
    """One session: the live transcript, presence, the brief, notes and the actions."""

    template_name = "handoff_console/session.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        session_id: uuid.UUID = kwargs["session_id"]
        user = self.request.user
        session = (
            DurableSession.objects.select_related("assigned_operator", "owner")
            .filter(pk=session_id)
            .first()
        )
        if session is None or not can_view(session, user):
            raise Http404("No such session")
        args = [session.id]
        customer_name = queue.customer_name_of(session)
        context.update(
            session=session,
            brief=brief(session.id),
            profile=customer_profile(session),
            previous=previous_conversations(session, user),
            customer_name=customer_name,
            canned=replies_for(user),
            # The conversation list beside this one starts from this, then follows the feed.
            snapshot=availability.with_operators(queue.snapshot(user), user),
            teams=availability.teams(),
            notes=notes_for(session.id),
            rating=getattr(session, "rating", None),
            operators=operator_choices(exclude=user),
            config={
                "session_id": str(session.id),
                "title": session.title,
                "customer_name": customer_name,
                "me": {"id": user.pk, "name": get_adapter().display_name(user)},
                # Until the websocket's snapshot arrives, the page shows this state.
                "session": {
                    "control": session.control,
                    "status": session.status,
                    "assigned_operator_id": session.assigned_operator_id,
                },
                "feed": FEED_PATH,
                "session_ws": SESSION_WS_PATH,
                "queue_url": reverse("handoff_console:queue"),
                # Every action is a call to the REST API; notes are the console's own.
                "api": {
                    **{
                        name: reverse(f"durable_sessions:session-{route}", args=args)
                        for name, route in API_ROUTES.items()
                    },
                    "notes": reverse("handoff_console:api-notes", args=args),
                    # The id of a tool call's approval replaces the placeholder.
                    "approval": reverse(
                        "durable_sessions:session-approval", args=[*args, APPROVAL_ID]
                    ),
                    "brief": reverse("handoff_console:api-brief", args=args),
                    "read": reverse("handoff_console:api-read", args=args),
                    "transfer_team": reverse("handoff_console:api-transfer-team", args=args),
                    "replies": reverse("handoff_console:api-replies"),
                },
            },
        )
        return context
