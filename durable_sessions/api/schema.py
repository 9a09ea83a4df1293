"""OpenAPI generation for the API views, with no global setting in the host project.

Each view carries :class:`ApiSchema` itself (``DEFAULT_SCHEMA_CLASS`` stays whatever the
host has), the authentication classes are described by :class:`SessionCsrfScheme`, and the
schema view generates with :data:`SCHEMA_SETTINGS` only (see :mod:`.docs`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import SAFE_METHODS

import durable_sessions

SESSION_ID = OpenApiParameter(
    "session_id",
    OpenApiTypes.UUID,
    OpenApiParameter.PATH,
    description="The session's id.",
)

SCHEMA_SETTINGS: dict[str, Any] = {
    "TITLE": "Durable sessions API",
    "DESCRIPTION": (
        "Sessions, messages, the event log and handoff of django-durable-sessions "
        "(and, where `handoff_console` is installed, operators' private notes). "
        'Every error is `{"error": {"code", "message", "field"?}}`; see docs/api.md.'
    ),
    "VERSION": durable_sessions.__version__,
    "PREPROCESSING_HOOKS": ["durable_sessions.api.schema.only_api_endpoints"],
    # Separate request and response components where they differ (e.g. read-only ids).
    "COMPONENT_SPLIT_REQUEST": True,
    # In the order of the URLconf: sessions, then what is done in a session.
    "SORT_OPERATIONS": False,
}

# What each error status of the API means, by its codes (see errors.py and docs/api.md).
ERROR_MEANINGS: dict[int, str] = {
    400: "Bad input, nothing stored: `bad_json`, `bad_request` or `invalid_field` (with `field`).",
    401: "`authentication_failed`: the token is not valid.",
    403: "`csrf_failed` (a cookie request without the CSRF header) or `permission_denied` "
    "(the action is for the customer, or for operators).",
    404: "`not_found`: no such session, or not yours.",
    409: "The session's state refuses it: `session_closed`, `conflict` (e.g. held by "
    "another operator), `client_id_conflict`, `not_in_control`, `reply_in_progress`.",
    415: "`unsupported_media_type`: send `application/json`.",
}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """Schema responses: the error shape, for each of ``statuses``."""
    from durable_sessions.api.serializers import ErrorSerializer

    return {
        code: OpenApiResponse(ErrorSerializer, description=ERROR_MEANINGS[code])
        for code in statuses
    }


class ApiSchema(AutoSchema):
    """The schema class of the API views: every ``<session_id>`` is a UUID."""

    def get_override_parameters(self) -> list[Any]:
        params = list(super().get_override_parameters())
        if "{session_id}" in self.path:
            params.append(SESSION_ID)
        return params


F = TypeVar("F", bound=Callable[..., Any])


def document(**kwargs: Any) -> Callable[[F], F]:
    """``extend_schema`` for a handler of an API view, based on :class:`ApiSchema`.

    ``extend_schema`` subclasses the function's ``schema`` attribute when it has one, and
    the host's ``DEFAULT_SCHEMA_CLASS`` otherwise, which need not be drf-spectacular's.
    """

    def decorate(handler: F) -> F:
        handler.schema = ApiSchema  # type: ignore[attr-defined]
        return extend_schema(**kwargs)(handler)

    return decorate


class SessionCsrfScheme(OpenApiAuthenticationExtension):
    """Describes ``SessionCsrfAuthentication``: the session cookie, plus the CSRF header on
    unsafe requests."""

    target_class = "durable_sessions.api.authentication.SessionCsrfAuthentication"
    name = ["cookieAuth", "csrfToken"]

    def get_security_definition(self, auto_schema: AutoSchema) -> list[dict[str, Any]]:
        from django.conf import settings

        header = settings.CSRF_HEADER_NAME.removeprefix("HTTP_").replace("_", "-")
        if header == "X-CSRFTOKEN":
            header = "X-CSRFToken"  # Django's default, as its docs spell it
        return [
            {
                "type": "apiKey",
                "in": "cookie",
                "name": settings.SESSION_COOKIE_NAME,
                "description": "The Django session: a logged-in user, or an anonymous "
                "visitor whose session holds their visitor id.",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": header,
                "description": f"The value of the `{settings.CSRF_COOKIE_NAME}` cookie; "
                "required with the session cookie on POST, PUT, PATCH and DELETE.",
            },
        ]

    def get_security_requirement(self, auto_schema: AutoSchema) -> dict[str, list[Any]]:
        if auto_schema.method in SAFE_METHODS:
            return {"cookieAuth": []}
        return {"cookieAuth": [], "csrfToken": []}


def only_api_endpoints(endpoints: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Preprocessing hook: keep the API's own endpoints, wherever the host includes them.

    The schema view walks the host's whole URLconf, so that paths carry the host's
    prefix; this drops every other view (and the schema and docs views themselves).
    """
    return [e for e in endpoints if getattr(getattr(e[3], "cls", None), "in_api_schema", False)]


def session_stream_paths() -> dict[str, Any]:
    """The session as a Durable Streams JSON stream (docs/durable-streams.md), which is not
    a DRF view: described by hand, under ``SESSION_STREAMS_PREFIX``."""
    from durable_sessions.app_settings import ds_settings

    def query(name: str, text: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": text,
        }

    def header(text: str) -> dict[str, Any]:
        return {"description": text, "schema": {"type": "string"}}

    data_headers = {
        "Stream-Next-Offset": header("The offset to read from next."),
        "Stream-Up-To-Date": header("`true` when the response reaches the tail."),
        "Stream-Closed": header("`true` when the session is closed and everything was read."),
        "Stream-Cursor": header("Live modes: echo it as `cursor`."),
        "ETag": header("For `If-None-Match` on a repeated read."),
    }
    events = {
        "type": "array",
        "items": {"type": "object", "description": "A log event, as the websocket sends it."},
    }
    path = "/" + ds_settings.SESSION_STREAMS_PREFIX + "{session_id}"
    return {
        path: {
            "get": {
                "operationId": "session_stream_read",
                "summary": "Read or follow the session as a Durable Streams JSON stream",
                "description": (
                    "The session's log events after `offset` (`-1`: from the start; `now`: "
                    "from the tail), read-only. With `live=long-poll` or `live=sse` the "
                    "request waits for new events. Access as the websocket's. See "
                    "docs/durable-streams.md."
                ),
                "tags": ["streams"],
                "parameters": [
                    {
                        "name": "session_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "format": "uuid"},
                    },
                    query("offset", "`-1`, `now`, or a `Stream-Next-Offset` value."),
                    query("live", "`long-poll` or `sse`."),
                    query("cursor", "The last `Stream-Cursor`, in live modes."),
                ],
                "responses": {
                    "200": {
                        "description": "Events (JSON array), or an event stream with `live=sse`.",
                        "headers": data_headers,
                        "content": {
                            "application/json": {"schema": events},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    "204": {
                        "description": "Long poll: nothing new before the timeout.",
                        "headers": data_headers,
                    },
                    "304": {"description": "Not modified (`If-None-Match`)."},
                    "400": {"description": "A malformed offset or parameter."},
                    "404": {"description": "No such session, or not yours."},
                    "429": {"description": "Too many waiting requests; see `Retry-After`."},
                },
            }
        }
    }
