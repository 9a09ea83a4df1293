"""The raw event log in the admin: read-only, one page at a time, filterable by session.

The log is append-only: events are never added, edited or deleted here.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from durable_sessions import wire
from durable_sessions.admin.inputs import CheckedInputAdmin
from durable_sessions.models import DurableSession, Event

SESSION_PARAM = "session__exact"
PREVIEW_CHARS = 100


def short_id(value: uuid.UUID | str) -> str:
    """The first block of a UUID: enough to tell the sessions of one page apart."""
    return str(value).split("-", 1)[0]


def full_timestamp(value: datetime) -> str:
    """Date and time to the millisecond, in the current time zone, with its offset: events
    of one second must still read in order."""
    local = timezone.localtime(value)
    return local.strftime("%Y-%m-%d %H:%M:%S.") + f"{local.microsecond // 1000:03d} {local:%z}"


def event_log_url(site_name: str, session_id: uuid.UUID, *, type_: str = "") -> str:
    """The Event list filtered to one session (and optionally one event type)."""
    url = reverse(
        f"admin:{Event._meta.app_label}_{Event._meta.model_name}_changelist", current_app=site_name
    )
    url += f"?{SESSION_PARAM}={session_id}"
    if type_:
        url += f"&{EventTypeFilter.parameter_name}={type_}"
    return url


class EventTypeFilter(admin.SimpleListFilter):
    """Event types from the known list (a DISTINCT over the whole log would be a scan)."""

    title = _("type")
    parameter_name = "type"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(t, t) for t in sorted(wire.ALL_TYPES)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> QuerySet[Event]:
        return queryset.filter(type=self.value()) if self.value() else queryset


@admin.register(Event)
class EventAdmin(CheckedInputAdmin):
    """The raw, append-only event log, one page at a time; read-only."""

    list_display = ["seq", "type", "session_link", "created_at_full", "payload_preview"]
    list_display_links = ["seq"]
    list_filter = [EventTypeFilter]
    # By the column, not the relation: ordering by "session" would join the sessions
    # table and sort by its own ordering instead of using the (session, seq) index.
    ordering = ["session_id", "seq"]
    list_per_page = 100
    # Counting a whole log on every page is slow on large tables.
    show_full_result_count = False
    fields = ["session_link", "seq", "type", "created_at_full", "payload_pretty"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = dict(extra_context or {})
        session = _filtered_session(request)
        if session is not None:
            extra_context.setdefault(
                "title", gettext("Event log of %(session)s") % {"session": session}
            )
        return super().changelist_view(request, extra_context)

    @admin.display(description=pgettext_lazy("durable session", "session"), ordering="session_id")
    def session_link(self, obj: Event) -> str:
        url = reverse(
            "admin:durable_sessions_durablesession_change",
            args=[obj.session_id],
            current_app=self.admin_site.name,
        )
        # A whole UUID wraps into several lines in a narrow column: the first block tells
        # sessions apart on one page; the full id is in the tooltip and the link.
        return format_html(
            '<a href="{}" title="{}" class="ds-short-id">{}</a>',
            url,
            obj.session_id,
            short_id(obj.session_id),
        )

    @admin.display(description=_("created at"), ordering="created_at")
    def created_at_full(self, obj: Event) -> str:
        return full_timestamp(obj.created_at)

    @admin.display(description=_("payload"))
    def payload_preview(self, obj: Event) -> str:
        # The first line stays short; the whole payload opens in place.
        text = json.dumps(obj.payload, ensure_ascii=False, sort_keys=True)
        pretty = json.dumps(obj.payload, ensure_ascii=False, sort_keys=True, indent=2)
        return format_html(
            '<details class="ds-payload-details"><summary>{}</summary>'
            '<pre class="ds-payload">{}</pre></details>',
            Truncator(text).chars(PREVIEW_CHARS),
            pretty,
        )

    @admin.display(description=_("payload"))
    def payload_pretty(self, obj: Event) -> str:
        text = json.dumps(obj.payload, ensure_ascii=False, sort_keys=True, indent=2)
        return format_html('<pre class="ds-payload">{}</pre>', text)


def _filtered_session(request: HttpRequest) -> DurableSession | None:
    try:
        session_id = uuid.UUID(request.GET.get(SESSION_PARAM, ""))
    except ValueError:
        return None
    return DurableSession.objects.filter(pk=session_id).only("pk", "title").first()
