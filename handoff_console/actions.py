"""The console's actions: POST endpoints that call the session service and answer JSON.

Every action is CSRF-protected by Django's middleware (the page's script sends the
``X-CSRFToken`` header), needs an operator who may see the session, and answers either
``{"ok": true, ...}`` or ``{"error": {"code": ..., "message": ...}}`` with a status that
says what went wrong (400 bad input, 403 no access, 404 no such session, 405 not a
POST, 409 the session is not in the state the action needs, e.g. "taken by Olga").
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.http import HttpRequest, JsonResponse

from durable_sessions import service
from durable_sessions.adapter import AnyUser
from durable_sessions.errors import Conflict, InvalidInput, ServiceError, SessionClosed
from durable_sessions.models import (
    DurableSession,
)
from handoff_console import queue
from handoff_console.notes import add_note, note_data, notes_for
from handoff_console.permissions import can_view, is_operator

STATUS_BY_CODE = {
    "invalid_field": 400,
    "bad_json": 400,
    "not_authenticated": 403,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "session_closed": 409,
}

# A request's JSON object (or form fields), and what an action adds to {"ok": true}.
Body = dict[str, Any]
Answer = dict[str, Any]
Action = Callable[[HttpRequest, DurableSession, Body], Answer]


def error_response(code: str, message: str, **extra: Any) -> JsonResponse:
    """The console's error shape, with the HTTP status that goes with ``code``."""
    body = {"error": {"code": code, "message": message, **extra}}
    return JsonResponse(body, status=STATUS_BY_CODE.get(code, 400))


def _body(request: HttpRequest) -> dict[str, Any]:
    """A JSON object body, or the form fields of a form POST."""
    if request.content_type == "application/json":
        data = json.loads(request.body or b"{}")
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        return data
    return request.POST.dict()


def console_action(*methods: str) -> Callable[[Action], Callable[..., JsonResponse]]:
    """Wrap an action: method, login, operator, session access, body and error mapping."""
    allowed = methods or ("POST",)

    def decorate(action: Action) -> Callable[..., JsonResponse]:
        @functools.wraps(action)
        def view(request: HttpRequest, session_id: uuid.UUID) -> JsonResponse:
            if request.method not in allowed:
                response = error_response(
                    "method_not_allowed", f"use {' or '.join(allowed)}", allowed=list(allowed)
                )
                response["Allow"] = ", ".join(allowed)
                return response
            if not request.user.is_authenticated:
                return error_response("not_authenticated", "log in first")
            if not is_operator(request.user):
                return error_response("forbidden", "the console is for operators")
            session = DurableSession.objects.filter(pk=session_id).first()
            if session is None or not can_view(session, request.user):
                return error_response("not_found", "no such session")
            try:
                body = _body(request) if request.method == "POST" else {}
            except ValueError:
                return error_response("bad_json", "the body is not a JSON object")
            try:
                result = action(request, session, body)
            except InvalidInput as error:
                return error_response(error.code, error.message, field=error.field)
            except Conflict as error:
                return error_response(
                    error.code,
                    error.message,
                    control=error.details.get("control"),
                    assigned_operator_id=error.details.get("assigned_operator_id"),
                )
            except ServiceError as error:
                return error_response(error.code, error.message)
            return JsonResponse({"ok": True, **result})

        return view

    return decorate


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise InvalidInput(name, "must be a string")
    return value


def _session_row(session: DurableSession, user: AnyUser) -> dict[str, Any]:
    rows = queue.rows_for([str(session.pk)], user)["rows"]
    return {"session": rows[0] if rows else None}


@console_action()
def take_over(request: HttpRequest, session: DurableSession, body: Body) -> Answer:
    """Claim the session from the AI or the queue; a second claim gets 409 "taken by ..."."""
    service.take_over(session.pk, request.user, reason=_text(body, "reason"))
    return _session_row(session, request.user)


@console_action()
def hand_back(request: HttpRequest, session: DurableSession, body: Body) -> Answer:
    """Return the session, held by the caller, to the AI."""
    service.hand_back(session.pk, request.user, reason=_text(body, "reason"))
    return _session_row(session, request.user)


@console_action()
def transfer(request: HttpRequest, session: DurableSession, body: Body) -> Answer:
    """Pass the session, held by the caller, to another operator (``to``: a user id)."""
    raw = body.get("to")
    try:
        to_id = int(raw)
    except (TypeError, ValueError):
        raise InvalidInput("to", "must be the id of an operator") from None
    target = get_user_model().objects.filter(pk=to_id, is_active=True).first()
    if target is None:
        raise InvalidInput("to", "must be an active operator")
    service.transfer(session.pk, request.user, target, reason=_text(body, "reason"))
    return _session_row(session, request.user)


@console_action()
def close(request: HttpRequest, session: DurableSession, body: Body) -> Answer:
    """Close the session, unless another operator holds it (then 409 "taken by ...")."""
    reason = _text(body, "reason")
    if not service.close_by_operator(session.pk, request.user, reason=reason):
        raise SessionClosed("the session is already closed")
    return _session_row(session, request.user)


@console_action("GET", "POST")
def notes(request: HttpRequest, session: DurableSession, body: Body) -> Answer:
    """GET: the session's private notes; POST ``text``: add one (operators only see it)."""
    if request.method == "GET":
        return {"notes": notes_for(session.pk)}
    note = add_note(session.pk, author=request.user, text=body.get("text"))
    return {"note": note_data(note)}
