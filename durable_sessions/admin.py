"""Read-mostly admin: the log is append-only, so messages and events are never edited."""

from django.contrib import admin

from durable_sessions.models import DurableSession, Event, Message, Participant


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ParticipantInline(ReadOnlyInline):
    model = Participant
    fields = ["kind", "display_name", "user", "joined_at", "left_at"]
    readonly_fields = fields


class MessageInline(ReadOnlyInline):
    model = Message
    fields = ["seq", "role", "author", "state", "content", "created_at"]
    readonly_fields = fields


@admin.register(DurableSession)
class DurableSessionAdmin(admin.ModelAdmin):
    list_display = ["id", "title", "owner", "control", "status", "assigned_operator", "updated_at"]
    list_filter = ["control", "status", "created_at"]
    search_fields = ["id", "title", "owner__username"]
    list_select_related = ["owner", "assigned_operator"]
    readonly_fields = [f.name for f in DurableSession._meta.fields]
    inlines = [ParticipantInline, MessageInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["session", "seq", "type", "created_at"]
    list_filter = ["type"]
    readonly_fields = ["session", "seq", "type", "payload", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
