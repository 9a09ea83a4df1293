"""Small JSON endpoints: create a session and read its events over HTTP."""

from __future__ import annotations

import json
import uuid

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from durable_sessions import events as ev
from durable_sessions import service
from durable_sessions.adapter import get_adapter, visitor_id
from durable_sessions.errors import InvalidInput
from durable_sessions.models import DurableSession
from durable_sessions.replay import read_events

MAX_EVENTS_PAGE = 1000


def error_response(code: str, message: str, status: int, **extra: object) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message, **extra}}, status=status)


@require_POST
def create_session(request: HttpRequest) -> JsonResponse:
    """POST a JSON object (optional ``title``); the caller becomes the owner."""
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return error_response("bad_json", "request body is not valid JSON", 400)
    if not isinstance(body, dict):
        return error_response("bad_request", "request body must be a JSON object", 400)
    user = request.user if request.user.is_authenticated else None
    visitor = "" if user else visitor_id(request.session, create=True)
    try:
        session = service.create_session(
            owner=user, visitor=visitor or "", title=body.get("title", "")
        )
    except InvalidInput as error:
        return error_response(error.code, error.message, 400, field=error.field)
    return JsonResponse(ev.session_data(session), status=201)


@require_GET
def session_events(request: HttpRequest, session_id: uuid.UUID) -> JsonResponse:
    """The events after ``after_seq`` (default 0), at most ``limit`` (default 1000)."""
    session = DurableSession.objects.filter(pk=session_id).first()
    access = (
        get_adapter().access(session, request.user, visitor_id(request.session))
        if session
        else None
    )
    if session is None or access is None:
        return error_response("not_found", "no such session, or not yours", 404)
    try:
        after = int(request.GET.get("after_seq", "0"))
        limit = int(request.GET.get("limit", str(MAX_EVENTS_PAGE)))
    except ValueError:
        return error_response("invalid_field", "after_seq and limit must be integers", 400)
    if after < 0 or not 1 <= limit <= MAX_EVENTS_PAGE:
        return error_response(
            "invalid_field", f"after_seq must be >= 0 and limit 1..{MAX_EVENTS_PAGE}", 400
        )
    frames = read_events(session.id, after, limit=limit)
    return JsonResponse(
        {"session": ev.session_data(session), "events": frames, "more": len(frames) == limit}
    )
