"""Who may use a session over the API: the adapter's rule, as on the websocket.

A session that does not exist and a session that is not the caller's both answer 404,
like the websocket's single close code 4403: a caller cannot probe for session ids.
A caller who may see the session but not do the action (a customer taking over, an
operator asking for a human on the customer's behalf) gets 403.

The view loads the session and asks the adapter once for the caller's access (see
``SessionView.get_object``); these are object permissions over that answer.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from durable_sessions.adapter import Access, get_adapter
from durable_sessions.api.authentication import request_visitor
from durable_sessions.models import DurableSession

NOT_FOUND = "no such session, or not yours"


class AccessView(Protocol):
    """What the permissions read from the view: the caller's access to its session."""

    access: Access | None


def parse_session_id(value: Any) -> uuid.UUID | None:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        return None


def caller_access(request: Request, session: DurableSession) -> Access | None:
    """How the caller may use ``session`` (the adapter's answer), or None."""
    return get_adapter().access(session, request.user, request_visitor(request))


class SessionAccess(BasePermission):
    """The caller may see the session: its owner or an operator. Anyone else gets 404."""

    def has_object_permission(self, request: Request, view: AccessView, obj: Any) -> bool:  # type: ignore[override]
        if view.access is None:
            # Raised, not returned: DRF would turn a refusal into 401/403.
            raise NotFound(NOT_FOUND)
        return True


class OwnerOnly(BasePermission):
    """The session's customer (after :class:`SessionAccess`)."""

    def has_object_permission(self, request: Request, view: AccessView, obj: Any) -> bool:  # type: ignore[override]
        if view.access is not Access.OWNER:
            raise PermissionDenied("this action is for the session's customer")
        return True


class OperatorOnly(BasePermission):
    """An operator (after :class:`SessionAccess`)."""

    def has_object_permission(self, request: Request, view: AccessView, obj: Any) -> bool:  # type: ignore[override]
        if view.access is not Access.OPERATOR:
            raise PermissionDenied("this action is for operators")
        return True
