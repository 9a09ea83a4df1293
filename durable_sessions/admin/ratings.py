"""Customers' ratings of closed conversations (CSAT) in the admin: listed, never changed
here (the customer gives a rating once, through the session service)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from durable_sessions.admin.inputs import CheckedInputAdmin
from durable_sessions.models import SessionRating


@admin.register(SessionRating)
class SessionRatingAdmin(CheckedInputAdmin):
    """Read-only list of ratings, by score and date."""

    list_display = ["created_at", "score", "session_link", "comment_preview"]
    list_select_related = ["session"]
    list_filter = ["score", ("created_at", admin.DateFieldListFilter)]
    fields = ["session_link", "score", "comment", "seq", "created_at"]
    readonly_fields = fields
    search_fields = ["comment", "session__id"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=pgettext_lazy("durable session", "session"), ordering="session")
    def session_link(self, obj: SessionRating) -> str:
        url = reverse(
            f"{self.admin_site.name}:durable_sessions_durablesession_change", args=[obj.session_id]
        )
        return format_html('<a href="{}">{}</a>', url, obj.session)

    @admin.display(description=_("comment"))
    def comment_preview(self, obj: SessionRating) -> str:
        return obj.comment if len(obj.comment) <= 80 else obj.comment[:79] + "…"
