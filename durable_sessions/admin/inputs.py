"""What the admin's lists and pages accept from the address bar.

A search, a filter or an object id holding NUL (or a lone surrogate) can match nothing
stored, and PostgreSQL refuses NUL in a query outright: the request is refused with a 400
that names the parameter, instead of a server error.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, QueryDict

from durable_sessions.service.validation import printable, storable


def unstorable_parameter(query: QueryDict) -> str | None:
    """The first parameter of ``query`` whose name or a value cannot be queried."""
    for name, values in query.lists():
        if not storable(name) or not all(storable(v) for v in values):
            return name
    return None


class CheckedInputAdmin(admin.ModelAdmin):
    """A model admin whose list and pages refuse parameters that cannot be queried."""

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        name = unstorable_parameter(request.GET)
        if name is not None:
            shown = printable(name).replace("\x00", "\\x00")
            return HttpResponseBadRequest(
                f"The parameter {shown!r} holds a NUL character or invalid text.",
                content_type="text/plain; charset=utf-8",
            )
        return super().changelist_view(request, extra_context)

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None):
        if not storable(object_id):
            return None  # the admin then says that no such object exists
        return super().get_object(request, object_id, from_field)
