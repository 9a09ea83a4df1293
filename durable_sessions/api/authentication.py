"""Who is calling: a DRF token, or the Django session (a logged-in user or a visitor).

An anonymous visitor's Django session is a credential too: it holds the visitor id that
owns their conversations. DRF's ``SessionAuthentication`` checks CSRF only for logged-in
users, which would let any web page post into a visitor's conversation with their cookie.
:class:`SessionCsrfAuthentication` therefore checks Django's CSRF token on every unsafe
request that reaches it, logged in or not; it runs after the token authenticator, so
token-authenticated requests (which no browser sends on its own) need no CSRF token.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from rest_framework.authentication import (
    BaseAuthentication,
    CSRFCheck,
    SessionAuthentication,
    TokenAuthentication,
    get_authorization_header,
)
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request

from durable_sessions.adapter import visitor_id
from durable_sessions.api.errors import CsrfFailed

TOKEN_APP = "rest_framework.authtoken"


class SessionCsrfAuthentication(SessionAuthentication):
    """Django-session authentication that enforces CSRF for every unsafe request."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        if request.method not in SAFE_METHODS:
            self.enforce_csrf(request)
        user = getattr(request._request, "user", None)
        if user is None or not user.is_active:
            return None  # an anonymous visitor: identified by the session's visitor id
        return (user, None)

    def enforce_csrf(self, request: Request) -> None:
        def no_response(_request: Any) -> None:  # pragma: no cover - never called
            return None

        check = CSRFCheck(no_response)
        # process_request reads the CSRF cookie into request.META, as the middleware does.
        check.process_request(request)
        reason = check.process_view(request, None, (), {})
        if reason:
            raise CsrfFailed(f"CSRF check failed: {reason}")


class TokensNotEnabled(BaseAuthentication):
    """Stands in for ``TokenAuthentication`` when ``rest_framework.authtoken`` is not installed.

    Without it a request carrying ``Authorization: Token ...`` would fall through to the
    cookie check and be served as an anonymous visitor (an empty list, a misleading CSRF
    refusal). A program that sends a token must learn at once that tokens are off: 401.
    """

    keyword = "Token"

    def authenticate(self, request: Request) -> None:
        words = get_authorization_header(request).split()
        if words and words[0].lower() == self.keyword.lower().encode():
            raise AuthenticationFailed(
                "Token authentication is not enabled on this server: the site must add "
                f"{TOKEN_APP} to INSTALLED_APPS."
            )
        return None

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


def api_authenticators() -> list[BaseAuthentication]:
    """The authenticators of every API view: tokens when the host enabled them, then sessions.

    Decided per request rather than at import: ``rest_framework.authtoken`` is optional,
    and its model cannot be imported in a project that does not install it.
    """
    found: list[BaseAuthentication] = []
    found.append(TokenAuthentication() if apps.is_installed(TOKEN_APP) else TokensNotEnabled())
    found.append(SessionCsrfAuthentication())
    return found


def is_token_request(request: Request) -> bool:
    return isinstance(request.successful_authenticator, TokenAuthentication)


def request_visitor(request: Request) -> str | None:
    """The anonymous visitor id of a cookie-authenticated request.

    A token-authenticated request is its token's user and nothing else: cookies that may
    come with it do not add a visitor identity.
    """
    if is_token_request(request):
        return None
    return visitor_id(getattr(request._request, "session", None))
