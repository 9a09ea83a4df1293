"""Who may use a session over the API: the adapter's rule, as on the websocket.

A session that does not exist and a session that is not the caller's both answer 404,
like the websocket's single close code 4403: a caller cannot probe for session ids.
A caller who may see the session but not do the action (a customer taking over, an
operator asking for a human on the customer's behalf) gets 403.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from durable_sessions.adapter import Access, get_adapter
from durable_sessions.api.authentication import request_visitor
from durable_sessions.models import DurableSession

if TYPE_CHECKING:
    from durable_sessions.api.base import SessionView

NOT_FOUND = "no such session, or not yours"


def parse_session_id(value: Any) -> uuid.UUID | None:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        return None


class SessionAccess(BasePermission):
    """Loads the session of the URL and the caller's access to it, or answers 404.

    Sets ``view.session`` and ``view.access`` for the view and the permissions after it.
    """

    def has_permission(self, request: Request, view: SessionView) -> bool:  # type: ignore[override]
        session_id = parse_session_id(view.kwargs.get("session_id"))
        session = DurableSession.objects.filter(pk=session_id).first() if session_id else None
        access = (
            get_adapter().access(session, request.user, request_visitor(request))
            if session is not None
            else None
        )
        if session is None or access is None:
            # Raised, not returned: DRF would turn a refusal into 401/403.
            raise NotFound(NOT_FOUND)
        view.session, view.access = session, access
        return True


class OwnerOnly(BasePermission):
    """The session's customer (after :class:`SessionAccess`)."""

    def has_permission(self, request: Request, view: SessionView) -> bool:  # type: ignore[override]
        if view.access is not Access.OWNER:
            raise PermissionDenied("this action is for the session's customer")
        return True


class OperatorOnly(BasePermission):
    """An operator (after :class:`SessionAccess`)."""

    def has_permission(self, request: Request, view: SessionView) -> bool:  # type: ignore[override]
        if view.access is not Access.OPERATOR:
            raise PermissionDenied("this action is for operators")
        return True
