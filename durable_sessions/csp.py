"""A Content-Security-Policy header for every page, for Django versions without one built in.

Add ``durable_sessions.csp.ContentSecurityPolicyMiddleware`` to ``MIDDLEWARE``. It sends
``DURABLE_SESSIONS["CONTENT_SECURITY_POLICY"]`` with each response that does not set its
own policy. The default allows scripts, styles and connections (websockets included)
from the site's own origin only, and no inline script or style: every page of
``durable_sessions`` and ``handoff_console`` keeps its scripts and styles in static files,
so an injected ``<script>`` or ``style`` attribute never runs even if it got past escaping.

A view that needs another policy sets the header itself, or marks the response with
:func:`csp_exempt` (e.g. a page that embeds a third-party widget).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from durable_sessions.app_settings import ds_settings

HEADER = "Content-Security-Policy"
REPORT_ONLY_HEADER = "Content-Security-Policy-Report-Only"
EXEMPT_ATTRIBUTE = "_csp_exempt"

GetResponse = Callable[[HttpRequest], Any]
V = TypeVar("V", bound=Callable[..., Any])


def csp_exempt(view: V) -> V:
    """Decorate a view whose responses must go without the policy."""

    if iscoroutinefunction(view):

        @wraps(view)
        async def async_wrapped(*args: Any, **kwargs: Any) -> HttpResponseBase:
            response = await view(*args, **kwargs)
            setattr(response, EXEMPT_ATTRIBUTE, True)
            return response

        return async_wrapped  # type: ignore[return-value]

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> HttpResponseBase:
        response = view(*args, **kwargs)
        setattr(response, EXEMPT_ATTRIBUTE, True)
        return response

    return wrapped  # type: ignore[return-value]


def add_policy(response: HttpResponseBase) -> HttpResponseBase:
    """Add the configured policy to ``response`` unless it has one or is exempt."""
    if getattr(response, EXEMPT_ATTRIBUTE, False):
        return response
    if HEADER in response or REPORT_ONLY_HEADER in response:
        return response  # the view chose its own
    policy = ds_settings.CONTENT_SECURITY_POLICY
    if policy:
        name = REPORT_ONLY_HEADER if ds_settings.CONTENT_SECURITY_POLICY_REPORT_ONLY else HEADER
        response[name] = policy
    return response


class ContentSecurityPolicyMiddleware:
    """Sends the Content-Security-Policy of ``DURABLE_SESSIONS`` with every response.

    Every response, not only HTML: a JSON or text answer opened directly in a browser is
    a document too. Works under WSGI and ASGI (sync and async).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self._acall(request)
        return add_policy(self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        response = await self.get_response(request)
        return add_policy(response)
