"""The websocket Origin check: whole origins (scheme, host and port), not just hosts.

Browsers send cookies with cross-site websocket handshakes and CSRF protection does not
see them, so the Origin header is what keeps other sites' pages out. Channels'
``AllowedHostsOriginValidator`` compares only the host: a page on ``http://127.0.0.1:9999``
(another local app) or ``https://127.0.0.1`` could open a socket to the app on
``http://127.0.0.1:8000`` with the user's cookies.

:class:`OriginValidator` accepts an origin when it is

- one of ``allowed_origins`` (by default Django's ``CSRF_TRUSTED_ORIGINS``), compared on
  scheme, host and port; ``https://*.example.com`` allows the subdomains, as in Django;
- or the origin of the handshake itself: the ``Host`` header (one of ``ALLOWED_HOSTS``)
  with the connection's scheme, as Django's CSRF check accepts a same-origin request.

With no origin configured it falls back to Channels' ``AllowedHostsOriginValidator``
(any scheme and port of a host in ``ALLOWED_HOSTS``). A handshake without an Origin
header is refused either way; a refused handshake gets HTTP 403 and reaches no consumer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import ParseResult, urlparse

from channels.security.websocket import OriginValidator as ChannelsOriginValidator
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

ASGIApp = Callable[..., Awaitable[None]]
# The page's scheme for the socket's (a wss:// socket comes from an https:// page).
PAGE_SCHEMES = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _allowed_hosts() -> list[str]:
    # As Django's request.get_host() and Channels do: local names when DEBUG lists none.
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def _pattern(origin: str) -> str:
    """A configured origin as Channels matches it: ``*.example.com`` is ``.example.com``."""
    return origin.lower().replace("://*.", "://.", 1)


async def _refuse_scope(kind: str) -> None:
    raise ValueError(f"OriginValidator checks websocket connections only, not {kind}")


class OriginValidator(ChannelsOriginValidator):
    """Refuse a websocket handshake unless its Origin is allowed (see the module)."""

    def __init__(self, application: ASGIApp, allowed_origins: Sequence[str] | None = None):
        super().__init__(application, allowed_origins)

    def configured_origins(self) -> list[str]:
        origins = self.allowed_origins
        if origins is None:
            origins = getattr(settings, "CSRF_TRUSTED_ORIGINS", ())
        return [_pattern(o) for o in origins]

    def own_origin(self, scope: dict[str, Any]) -> str | None:
        """The handshake's own origin, when its Host header is one of ``ALLOWED_HOSTS``."""
        host = _header(scope, b"host")
        scheme = PAGE_SCHEMES.get(scope.get("scheme", "ws"))
        if not host or scheme is None:
            return None
        domain, _ = split_domain_port(host)
        if not domain or not validate_host(domain, _allowed_hosts()):
            return None
        return f"{scheme}://{host.lower()}"

    # A plain function that hands back the coroutine of the app it lets through (or of the
    # denier): an open connection keeps no coroutine frame of the check (the attribute
    # tells ASGI servers it is ASGI 3).
    _asgi_single_callable = True

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        if scope["type"] != "websocket":
            return _refuse_scope(scope["type"])
        origin = _header(scope, b"origin")
        if origin is not None and self.allows(origin, scope):
            return self.application(scope, receive, send)
        return WebsocketDenier()(scope, receive, send)

    def allows(self, origin: str, scope: dict[str, Any]) -> bool:
        parsed = urlparse(origin.lower())
        try:
            # Refuses an origin without a host, or with a port out of range.
            if parsed.hostname is None or parsed.scheme not in ("http", "https"):
                return False
            parsed.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            return False
        configured = self.configured_origins()
        if not configured:
            return self._matches(parsed, _allowed_hosts())
        own = self.own_origin(scope)
        return self._matches(parsed, configured + ([own] if own else []))

    def _matches(self, parsed: ParseResult, patterns: list[str]) -> bool:
        try:
            return any(
                pattern == "*" or self.match_allowed_origin(parsed, pattern) for pattern in patterns
            )
        except ValueError:  # a configured origin with a bad port
            return False
