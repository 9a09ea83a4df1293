"""Console pages."""

from __future__ import annotations

from typing import Any

from django.views.generic import TemplateView

from durable_sessions.models import Control, DurableSession, Status
from handoff_console.permissions import OperatorRequiredMixin


class QueueView(OperatorRequiredMixin, TemplateView):
    """The operator's queue: sessions waiting for a human, held by humans, and by the AI."""

    template_name = "handoff_console/queue.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        open_sessions = DurableSession.objects.filter(status=Status.OPEN).select_related(
            "owner", "assigned_operator"
        )
        context["waiting"] = open_sessions.filter(control=Control.QUEUED).order_by("updated_at")
        context["human"] = open_sessions.filter(control=Control.HUMAN)[:100]
        context["ai"] = open_sessions.filter(control=Control.AI)[:100]
        return context
