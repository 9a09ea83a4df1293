"""Device grants in the admin: listed and inspected, never changed here.

A grant is made, opened and revoked by the customer through the session service; staff
see which sessions have links, their state and times. Neither the token (only its hash is
stored) nor the browsers' visitor ids (a short prefix at most) are shown.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from durable_sessions.admin.inputs import CheckedInputAdmin
from durable_sessions.models import DeviceGrant

# A grant's state as the list shows it (the stored value stays English).
STATES = {
    "revoked": pgettext_lazy("device link", "revoked"),
    "active": pgettext_lazy("device link", "active"),
    "expired": pgettext_lazy("device link", "expired"),
    "pending": pgettext_lazy("device link", "pending"),
}


@admin.register(DeviceGrant)
class DeviceGrantAdmin(CheckedInputAdmin):
    """Read-only list of "continue on another device" grants."""

    list_display = [
        "id",
        "session_link",
        "state",
        "created_at",
        "expires_at",
        "redeemed_at",
        "revoked_at",
    ]
    list_select_related = ["session"]
    list_filter = [
        ("redeemed_at", admin.EmptyFieldListFilter),
        ("revoked_at", admin.EmptyFieldListFilter),
    ]
    fields = [
        "session_link",
        "state",
        "created_at",
        "expires_at",
        "redeemed_at",
        "device",
        "revoked_at",
    ]
    readonly_fields = fields
    search_fields = ["session__id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=pgettext_lazy("durable session", "session"), ordering="session")
    def session_link(self, obj: DeviceGrant) -> str:
        url = reverse(
            f"{self.admin_site.name}:durable_sessions_durablesession_change", args=[obj.session_id]
        )
        return format_html('<a href="{}">{}</a>', url, obj.session)

    @admin.display(description=_("state"))
    def state(self, obj: DeviceGrant) -> str:
        return str(STATES.get(obj.state, obj.state))

    @admin.display(description=_("opened by"))
    def device(self, obj: DeviceGrant) -> str:
        if not obj.redeemed_by_visitor:
            return "—"
        return gettext("anonymous visitor %(id)s") % {"id": obj.redeemed_by_visitor[:8]}
