"""The console's data in the admin: private notes (read-only), canned replies, teams and
operators' availability."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from durable_sessions.admin import user_search_fields
from durable_sessions.admin.inputs import CheckedInputAdmin
from handoff_console.availability import effective
from handoff_console.models import (
    Availability,
    CannedReply,
    OperatorAvailability,
    OperatorNote,
    Team,
)


@admin.register(OperatorNote)
class OperatorNoteAdmin(CheckedInputAdmin):
    """Read-only list of the notes operators wrote about sessions."""

    list_display = ("created_at", "session", "author", "short_text")
    list_select_related = ("session", "author")
    readonly_fields = ("session", "author", "text", "created_at")
    date_hierarchy = "created_at"

    @admin.display(description=_("text"))
    def short_text(self, note: OperatorNote) -> str:
        return note.text if len(note.text) <= 80 else note.text[:79] + "…"

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        # The user model's own login and e-mail fields: a custom model may have no username.
        return ["text", *user_search_fields("author"), "session__id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: OperatorNote | None = None) -> bool:
        return False


@admin.register(CannedReply)
class CannedReplyAdmin(CheckedInputAdmin):
    """Canned replies: admins may tidy the shared ones and anyone's own."""

    list_display = ("shortcut", "owner", "short_text", "created_at")
    list_select_related = ("owner",)
    list_filter = (("owner", admin.EmptyFieldListFilter),)
    search_fields = ("shortcut", "text", "owner__username")
    raw_id_fields = ("owner",)

    @admin.display(description=_("text"))
    def short_text(self, reply: CannedReply) -> str:
        return reply.text if len(reply.text) <= 80 else reply.text[:79] + "…"


@admin.register(Team)
class TeamAdmin(CheckedInputAdmin):
    """Teams of operators: a session queued for a team's slug goes to its members."""

    list_display = ("name", "slug", "member_count")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    filter_horizontal = ("members",)

    @admin.display(description=_("members"))
    def member_count(self, team: Team) -> int:
        return team.members.count()


@admin.register(OperatorAvailability)
class OperatorAvailabilityAdmin(CheckedInputAdmin):
    """What operators chose, and what is in effect (offline without a console page)."""

    list_display = ("user", "status", "in_effect", "seen_at", "last_assigned_at")
    list_select_related = ("user",)
    list_filter = ("status",)
    readonly_fields = ("seen_at", "last_assigned_at", "changed_at")
    raw_id_fields = ("user",)

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return user_search_fields("user")

    @admin.display(description=_("in effect"))
    def in_effect(self, record: OperatorAvailability) -> str:
        state = effective(record)
        return str(dict(Availability.choices).get(state, state))
