"""The Django admin of durable sessions: read-only pages, changes only through actions.

Sessions are inspected here and changed only by the actions of
:mod:`durable_sessions.admin.actions`, which call the session service. Messages,
participants and events are never added, edited or deleted here: the log is
append-only. Message text is untrusted and is always rendered escaped.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import display_for_value
from django.contrib.auth import get_permission_codename, get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db.models import (
    Case,
    Count,
    DateTimeField,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.timesince import timesince
from django.utils.translation import gettext, ngettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from durable_sessions import wire
from durable_sessions.admin import actions as admin_actions
from durable_sessions.admin import devices as devices
from durable_sessions.admin import erasure as erasure
from durable_sessions.admin import ratings as ratings
from durable_sessions.admin import streams as streams
from durable_sessions.admin.detail import detail_context
from durable_sessions.admin.events import event_log_url
from durable_sessions.admin.inputs import CheckedInputAdmin
from durable_sessions.models import Control, DurableSession, Event, Message, Status
from durable_sessions.service.chats import chat_id_of

PREVIEW_CHARS = 80


def annotate_activity(queryset: QuerySet[DurableSession]) -> QuerySet[DurableSession]:
    """Add the list's computed columns as correlated subqueries.

    Subqueries rather than joins + GROUP BY: a page costs one query whatever the
    length of its transcripts, and searching messages cannot inflate the counts.
    """
    messages = Message.objects.filter(session=OuterRef("pk")).order_by()
    session_events = Event.objects.filter(session=OuterRef("pk"))
    return (
        queryset.with_last_message(PREVIEW_CHARS + 1)
        .with_last_control()
        .annotate(
            message_count=Coalesce(
                Subquery(messages.values("session").annotate(n=Count("pk")).values("n")),
                Value(0),
            ),
            last_activity=Subquery(session_events.order_by("-seq").values("created_at")[:1]),
            # The newest control change of a queued session is the one that queued it.
            queued_since=Case(
                When(Q(control=Control.QUEUED, status=Status.OPEN), then=F("control_at")),
                default=None,
                output_field=DateTimeField(),
            ),
        )
    )


def user_search_fields(prefix: str) -> list[str]:
    """Search on the user model's own username and email fields (custom models too)."""
    user_model = get_user_model()
    names = [user_model.USERNAME_FIELD, user_model.get_email_field_name()]
    fields = []
    for name in dict.fromkeys(names):
        try:
            user_model._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        fields.append(f"{prefix}__{name}")
    return fields


@admin.register(DurableSession)
class DurableSessionAdmin(CheckedInputAdmin):
    """Sessions: a searchable list and a read-only page with the transcript and handoffs.

    Nothing is edited in a form; the actions (close, return to the AI, escalate,
    export) go through the session service.
    """

    list_display = [
        "session_label",
        "owner_label",
        "control",
        "status",
        "assigned_operator",
        "message_count",
        "last_activity",
        "waiting_time",
        "last_message_preview",
    ]
    list_display_links = ["session_label"]
    list_filter = [
        "control",
        "status",
        ("created_at", admin.DateFieldListFilter),
        ("assigned_operator", admin.RelatedOnlyFieldListFilter),
    ]
    list_select_related = ["owner", "assigned_operator"]
    list_per_page = 50
    search_help_text = _(
        "Search titles, owners and operators (username or email), participant names "
        "and message text; a pasted session id finds that session."
    )
    actions = [*admin_actions.SESSION_ACTIONS, erasure.erase_customers]
    fieldsets = [
        (None, {"fields": ["id", "title", "owner_label", "control", "status", "chat_id"]}),
        (_("Handoff"), {"fields": ["assigned_operator", "waiting_time"]}),
        (
            _("Activity"),
            {
                "fields": [
                    "created_at",
                    "last_activity",
                    "closed_at",
                    "message_count",
                    "event_log",
                ]
            },
        ),
        (_("Metadata"), {"fields": ["metadata"], "classes": ["collapse"]}),
    ]
    readonly_fields = [
        "id",
        "title",
        "owner_label",
        "control",
        "status",
        "chat_id",
        "assigned_operator",
        "waiting_time",
        "created_at",
        "last_activity",
        "closed_at",
        "message_count",
        "event_log",
        "metadata",
    ]

    # --- permissions: view everything, change nothing except through the actions ---

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The form would save the row directly, around the service.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Whether the user may run the state-changing actions (the model's change perm)."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('change', opts)}")

    def has_erase_permission(self, request: HttpRequest) -> bool:
        """Whether the user may erase customers (the model's delete permission)."""
        return erasure.has_erase_permission(self, request)

    # --- queries ---

    def get_queryset(self, request: HttpRequest) -> QuerySet[DurableSession]:
        queryset = super().get_queryset(request).select_related("owner", "assigned_operator")
        return annotate_activity(queryset)

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return [
            "title",
            *user_search_fields("owner"),
            *user_search_fields("assigned_operator"),
            "participants__display_name",
            "messages__content",
        ]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[DurableSession], search_term: str
    ) -> tuple[QuerySet[DurableSession], bool]:
        try:
            session_id = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        # A pasted id matches that session only (the text search would not find it).
        return queryset.filter(pk=session_id), False

    # --- columns ---

    @admin.display(description=pgettext_lazy("durable session", "session"), ordering="title")
    def session_label(self, obj: DurableSession) -> str:
        return obj.title or gettext("Session %(id)s") % {"id": str(obj.pk)[:8]}

    @admin.display(description=_("owner"), ordering="owner")
    def owner_label(self, obj: DurableSession) -> str:
        if obj.owner_id is not None:
            return obj.owner.get_username()
        if obj.owner_visitor:
            # A prefix is enough to tell visitors apart; the id itself stays private.
            return gettext("anonymous visitor %(id)s") % {"id": obj.owner_visitor[:8]}
        return "—"

    @admin.display(description=_("AI SDK chat id"))
    def chat_id(self, obj: DurableSession) -> str:
        """The chat id an AI SDK frontend names this session by (docs/aisdk.md)."""
        return chat_id_of(obj.pk) or "—"

    @admin.display(description=_("messages"), ordering="message_count")
    def message_count(self, obj: DurableSession) -> int:
        return obj.message_count

    @admin.display(description=_("last activity"), ordering="last_activity")
    def last_activity(self, obj: DurableSession) -> str:
        # Formatted here: the read-only field of the detail page would print the raw value.
        return display_for_value(obj.last_activity, self.get_empty_value_display())

    @admin.display(description=_("waiting for a human"), ordering="queued_since")
    def waiting_time(self, obj: DurableSession) -> str:
        if obj.queued_since is None:
            return self.get_empty_value_display()
        return timesince(obj.queued_since, timezone.now())

    @admin.display(description=_("last message"))
    def last_message_preview(self, obj: DurableSession) -> str:
        # Returned as plain text: the admin escapes it like any other value.
        return Truncator(obj.last_preview or "").chars(PREVIEW_CHARS)

    @admin.display(description=_("event log"))
    def event_log(self, obj: DurableSession) -> str:
        url = event_log_url(self.admin_site.name, obj.pk)
        # Rows, not seqs: a compacted reply's deltas are message.snapshot rows.
        counts = Event.objects.filter(session=obj).aggregate(
            rows=Count("pk"), snapshots=Count("pk", filter=Q(type=wire.MESSAGE_SNAPSHOT))
        )
        count, snapshots = counts["rows"], counts["snapshots"]
        events = ngettext("%(count)s event", "%(count)s events", count) % {"count": count}
        link = format_html('<a href="{}">{}</a>', url, events)
        if not snapshots:
            return format_html("{}; {}", link, gettext("not compacted"))
        compacted = ngettext(
            "compacted (%(count)s message.snapshot event in place of finished replies' "
            "deltas; seqs 1…%(last)s)",
            "compacted (%(count)s message.snapshot events in place of finished replies' "
            "deltas; seqs 1…%(last)s)",
            snapshots,
        ) % {"count": snapshots, "last": obj.last_seq}
        return format_html("{}; {}", link, compacted)

    # --- the session's page ---

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: DurableSession | None = None,
    ) -> TemplateResponse:
        if obj is not None:
            context.update(detail_context(request, obj))
            context.update(self._detail_actions(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _detail_actions(self, request: HttpRequest, obj: DurableSession) -> dict[str, Any]:
        """The action buttons of a session's page: those that apply to it now."""
        available = self.get_actions(request)
        wanted = [("export_json", gettext("Export as JSON"))]
        if obj.status == Status.OPEN:
            if obj.control == Control.AI:
                wanted.insert(0, ("escalate_to_human", gettext("Escalate to a human")))
            else:
                wanted.insert(0, ("return_to_ai", gettext("Return to the AI")))
            wanted.insert(0, ("close_sessions", gettext("Close session")))
        name = self.admin_site.name
        return {
            "ds_actions": [(key, label) for key, label in wanted if key in available],
            "ds_changelist_url": reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist",
                current_app=name,
            ),
            "ds_from_detail_param": admin_actions.FROM_DETAIL_PARAM,
            "ds_event_log_url": event_log_url(name, obj.pk),
            "ds_handoff_log_url": event_log_url(name, obj.pk, type_=wire.CONTROL_CHANGED),
        }
