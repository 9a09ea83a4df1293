"""The adapter: class-path hook through which a host project decides access and names.

Subclass :class:`SessionAdapter` and set ``DURABLE_SESSIONS["ADAPTER"]`` to its path.
"""

from __future__ import annotations

import re
import secrets
from enum import Enum
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser

from durable_sessions.app_settings import ds_settings
from durable_sessions.models import DeviceGrant, DurableSession, Status

VISITOR_KEY = "durable_sessions.visitor"
# Bidirectional embeddings, overrides, isolates and marks. Names are shown amid other
# text: U+202E in "Olga\u202e" would reverse the rest of the line around it.
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class Access(Enum):
    """How a connection relates to a session."""

    OWNER = "owner"
    OPERATOR = "operator"


AnyUser = AbstractBaseUser | AnonymousUser


class SessionAdapter:
    """Default policy: owners (user or anonymous browser), operators, and browsers holding a
    device grant of that one session; nobody else."""

    def is_operator(self, user: AnyUser | None) -> bool:
        if user is None or not user.is_authenticated or not user.is_active:
            return False
        if ds_settings.STAFF_ARE_OPERATORS and user.is_staff:
            return True
        return user.has_perm(ds_settings.OPERATOR_PERMISSION)

    def owns(self, session: DurableSession, user: AnyUser | None, visitor: str | None) -> bool:
        """Whether ``user`` / ``visitor`` is the session's own customer (not a device grant).

        Only the owner makes and revokes device links.
        """
        if user is not None and user.is_authenticated:
            if session.owner_id is not None and session.owner_id == user.pk:
                return True
        return bool(
            visitor
            and session.owner_id is None
            and session.owner_visitor
            and secrets.compare_digest(session.owner_visitor, visitor)
        )

    def has_device_grant(self, session: DurableSession, visitor: str | None) -> bool:
        """Whether the browser ``visitor`` opened a device link of this session that is
        still valid: not revoked, and the session still open."""
        if not visitor or session.status != Status.OPEN:
            return False
        return DeviceGrant.objects.filter(session=session).redeemed_by(visitor).exists()

    def access(
        self, session: DurableSession, user: AnyUser | None, visitor: str | None
    ) -> Access | None:
        """Return how ``user`` / ``visitor`` may use ``session``, or None for no access.

        A browser holding a device grant acts as the customer (``OWNER``) in that one
        session; its own visitor id and its own sessions are unchanged.
        """
        if self.owns(session, user, visitor):
            return Access.OWNER
        if self.is_operator(user):
            return Access.OPERATOR
        if self.has_device_grant(session, visitor):
            return Access.OWNER
        return None

    def may_use_streams(self, user: AnyUser | None, *, write: bool) -> bool:
        """Whether ``user`` may read (or, with ``write``, create, append to and delete)
        generic Durable Streams; by default as ``STREAMS_ACCESS`` says."""
        rule = ds_settings.STREAMS_ACCESS
        if rule == "anyone":
            return True
        if user is None or not user.is_authenticated or not user.is_active:
            return False
        return rule == "authenticated" or (rule == "staff" and user.is_staff)

    def display_name(self, user: AnyUser | None) -> str:
        if user is None or not user.is_authenticated:
            return "Visitor"
        full = user.get_full_name() if hasattr(user, "get_full_name") else ""
        name = BIDI_CONTROLS.sub("", full).strip() or BIDI_CONTROLS.sub("", user.get_username())
        return name or "User"

    def operator_name(self, user: AnyUser) -> str:
        """The name customers see for an operator: the full name they chose, else the
        team's alias (``OPERATOR_ALIAS``). Never a login name or e-mail: customers must
        not learn an employee's account."""
        full = user.get_full_name() if hasattr(user, "get_full_name") else ""
        return BIDI_CONTROLS.sub("", full).strip() or ds_settings.OPERATOR_ALIAS

    def agent_name(self, session: DurableSession) -> str:
        return "Assistant"

    def approvers(self, session_id: Any, tool_name: str, tool_input: dict[str, Any]) -> str:
        """Who answers a call's approval when its tool does not say: ``"any"``,
        ``"customer"`` or ``"operator"`` (e.g. operators only for refunds over a limit)."""
        return ds_settings.APPROVERS


def get_adapter() -> SessionAdapter:
    return ds_settings.ADAPTER()


def visitor_id(django_session: Any, *, create: bool = False) -> str | None:
    """The anonymous visitor id kept in a Django session (survives ``cycle_key``)."""
    if django_session is None:
        return None
    value = django_session.get(VISITOR_KEY)
    if value is None and create:
        value = secrets.token_urlsafe(24)
        django_session[VISITOR_KEY] = value
    return value
