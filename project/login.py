"""The demo's login page, with a limit on failed attempts.

Failures are counted in Django's cache (Redis when ``REDIS_URL`` is set, so that every
process counts together) per username and client address, and per address alone. Past
the limit the form is refused for the rest of the window without checking the password,
so guessing costs the attacker the window, not a hash per try.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.forms.utils import ErrorDict
from django.http import HttpRequest, HttpResponse

THROTTLED = "Too many failed attempts: try again later."
# An address may try this many times the per-username limit, over all usernames.
PER_ADDRESS_FACTOR = 10


def client_address(request: HttpRequest) -> str:
    """The client's address as the server sees it (behind a proxy, configure the proxy to
    pass it on; see docs/deploy.md)."""
    return request.META.get("REMOTE_ADDR", "")


def _key(*parts: str) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return f"login-failures:{digest}"


class ThrottledLoginView(LoginView):
    """Django's LoginView that refuses logins after too many failures (status 429)."""

    def _keys(self) -> list[tuple[str, int]]:
        username = str(self.request.POST.get("username", "")).strip().lower()
        address = client_address(self.request)
        limit = settings.LOGIN_FAILURE_LIMIT
        return [
            (_key("user", username, address), limit),
            (_key("addr", address), limit * PER_ADDRESS_FACTOR),
        ]

    def _blocked(self) -> bool:
        return any((cache.get(key) or 0) >= limit for key, limit in self._keys())

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if self._blocked():
            form = self.get_form()
            # Errors set by hand: validating the form would check the password.
            form.cleaned_data = {}
            form._errors = ErrorDict()
            form.add_error(None, ValidationError(THROTTLED, code="throttled"))
            context = self.get_context_data(form=form, throttled=True)
            return self.render_to_response(context, status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        window = settings.LOGIN_FAILURE_WINDOW
        for key, _ in self._keys():
            # add() starts the window; incr() keeps its expiry.
            if not cache.add(key, 1, timeout=window):
                try:
                    cache.incr(key)
                except ValueError:  # expired between add() and incr()
                    cache.add(key, 1, timeout=window)
        return super().form_invalid(form)

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        cache.delete(self._keys()[0][0])
        return super().form_valid(form)


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's login page with the same limit (it counts the same failures)."""
    if request.method == "GET" and request.user.is_active and request.user.is_staff:
        return admin.site.login(request)  # already in: the admin redirects as usual
    context = {
        **admin.site.each_context(request),
        "title": "Log in",
        "site_header": admin.site.site_header,
        "app_path": request.get_full_path(),
        "username": request.user.get_username(),
    }
    view = ThrottledLoginView.as_view(
        template_name="admin/login.html",
        authentication_form=AdminAuthenticationForm,
        extra_context=context,
    )
    return view(request)
