"""Generic Durable Streams in the admin: listed and inspected; deleted only through an
action that calls the stream service (as a protocol ``DELETE`` does)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from durable_sessions.admin.inputs import CheckedInputAdmin
from durable_sessions.errors import StreamError
from durable_sessions.service import stream_log
from durable_sessions.stream_models import Stream
from durable_sessions.stream_offsets import format_offset


@admin.register(Stream)
class StreamAdmin(CheckedInputAdmin):
    """Read-only list of generic streams, with their tail and state."""

    list_display = [
        "path",
        "content_type",
        "appends",
        "size",
        "closed",
        "soft_deleted",
        "ttl_seconds",
        "expires_at",
        "last_access_at",
    ]
    list_filter = ["closed", "soft_deleted"]
    search_fields = ["path"]
    fields = [
        "path",
        "content_type",
        "next_offset",
        "appends",
        "size",
        "closed",
        "soft_deleted",
        "ttl_seconds",
        "expires_at",
        "created_at",
        "last_access_at",
        "fork_source_path",
        "fork_offset",
    ]
    readonly_fields = fields
    actions = ["delete_streams"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        found = super().get_actions(request)
        if not request.user.has_perm("durable_sessions.delete_stream"):
            found.pop("delete_streams", None)
        return found

    @admin.display(description=_("appends"), ordering="tail_seq")
    def appends(self, obj: Stream) -> int:
        return obj.tail_seq

    @admin.display(description=_("bytes"), ordering="tail_bytes")
    def size(self, obj: Stream) -> int:
        return obj.tail_bytes

    @admin.display(description="Stream-Next-Offset")
    def next_offset(self, obj: Stream) -> str:
        return format_offset(obj.tail_seq, obj.tail_bytes)

    @admin.action(description=_("Delete the selected streams (kept hidden while forks read them)"))
    def delete_streams(self, request: HttpRequest, queryset: QuerySet[Stream]) -> None:
        deleted = 0
        for path in list(queryset.values_list("path", flat=True)):
            try:
                stream_log.delete(path)
            except StreamError:
                continue  # already gone, or only kept for its forks
            deleted += 1
        deleted_text = ngettext("%(count)d stream deleted.", "%(count)d streams deleted.", deleted)
        self.message_user(request, deleted_text % {"count": deleted}, messages.SUCCESS)
