"""Who is calling a stream URL, and whether they may.

A caller is a DRF token's user (``Authorization: Token <key>``, when the host installs
``rest_framework.authtoken``), or the Django session: a logged-in user, or an anonymous
visitor known by the cookie. A cookie is a credential a browser sends on its own, so a
state-changing request authenticated by it must carry Django's CSRF token as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.middleware.csrf import CsrfViewMiddleware

from durable_sessions.adapter import AnyUser, get_adapter, visitor_id

TOKEN_APP = "rest_framework.authtoken"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True, slots=True)
class Caller:
    user: AnyUser
    visitor: str | None
    by_token: bool
    # Why an unsafe request authenticated by its cookie was refused, if it was.
    csrf_failure: str | None = None

    @property
    def anonymous(self) -> bool:
        return not self.user.is_authenticated


def _token_user(request: HttpRequest) -> AnyUser | bool | None:
    """The token's user; False when the header names no token; None for a bad token."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() not in ("token", "bearer") or not key.strip():
        return False
    if not apps.is_installed(TOKEN_APP):
        return None
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key.strip()).first()
    if token is None or not token.user.is_active:
        return None
    return token.user


def _csrf_failure(request: HttpRequest) -> str | None:
    def no_response(_request: Any) -> None:  # pragma: no cover - never called
        return None

    check = CsrfViewMiddleware(no_response)
    check.process_request(request)
    refused = check.process_view(request, None, (), {})
    return None if refused is None else "CSRF check failed"


def identify(request: HttpRequest) -> Caller | None:
    """The caller, or None when the request names a token that is not valid.

    Runs on the database thread (the session and the token are rows)."""
    user = _token_user(request)
    if user is None:
        return None
    if user is not False:
        return Caller(user, None, True)
    session_user = getattr(request, "user", None)
    if session_user is None or not session_user.is_active:
        session_user = AnonymousUser()
    visitor = visitor_id(getattr(request, "session", None))
    failure = None
    if request.method not in SAFE_METHODS and session_user.is_authenticated:
        failure = _csrf_failure(request)
    return Caller(session_user, visitor, False, failure)


def may_use_streams(caller: Caller, *, write: bool) -> bool:
    return get_adapter().may_use_streams(caller.user, write=write)


def open_to_anyone(*, write: bool) -> bool:
    """Whether an anonymous caller may: then nobody needs identifying."""
    return get_adapter().may_use_streams(AnonymousUser(), write=write)
