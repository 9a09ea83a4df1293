"""System checks for the traps of integrating the apps into an existing project.

Each one catches a setup that "works" silently wrong: tokens read as anonymous requests,
pages without their scripts and styles, a login link that ends in a server error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import Warning, register
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.utils.module_loading import import_string

TOKEN_APP = "rest_framework.authtoken"
TOKEN_AUTHENTICATION = "rest_framework.authentication.TokenAuthentication"
STATIC_HANDLER = "django.contrib.staticfiles.handlers.ASGIStaticFilesHandler"
AUTH_URLS_LOGIN = "django.contrib.auth.views.LoginView"
LOGIN_TEMPLATE = "registration/login.html"


@register()
def check_token_app(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """DRF's token authentication is configured but its app (and table) is missing."""
    rest = getattr(settings, "REST_FRAMEWORK", None) or {}
    classes = [str(c) for c in rest.get("DEFAULT_AUTHENTICATION_CLASSES", ())]
    if TOKEN_AUTHENTICATION not in classes or apps.is_installed(TOKEN_APP):
        return []
    return [
        Warning(
            f"REST_FRAMEWORK uses {TOKEN_AUTHENTICATION} but {TOKEN_APP} is not in "
            "INSTALLED_APPS: the durable sessions API refuses every token (401).",
            hint=f"Add {TOKEN_APP!r} to INSTALLED_APPS and run migrate.",
            id="durable_sessions.W009",
        )
    ]


def _wrapped(app: Any, depth: int = 0) -> Iterator[Any]:
    """``app`` and every ASGI application it wraps (middleware, routers), depth first."""
    if app is None or depth > 12:
        return
    yield app
    mapping = getattr(app, "application_mapping", None)  # channels' ProtocolTypeRouter
    if isinstance(mapping, dict):
        for inner in mapping.values():
            yield from _wrapped(inner, depth + 1)
    for name in ("app", "application", "inner"):
        inner = getattr(app, name, None)
        if inner is not None and inner is not app and callable(inner):
            yield from _wrapped(inner, depth + 1)


@register()
def check_static_files_under_asgi(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """With DEBUG on, `daphne mysite.asgi:application` serves static files only if the
    ASGI application wraps Django in ``ASGIStaticFilesHandler`` (runserver does it itself)."""
    path = getattr(settings, "ASGI_APPLICATION", None)
    if not settings.DEBUG or not path or not apps.is_installed("django.contrib.staticfiles"):
        return []
    try:
        application = import_string(path)
        handler = import_string(STATIC_HANDLER)
    except Exception:  # the host's own import error is reported where it happens
        return []
    if any(isinstance(app, handler) for app in _wrapped(application)):
        return []
    return [
        Warning(
            f"DEBUG is on but {path} does not serve static files: under `daphne` (or any "
            "ASGI server but runserver) client.js, the console's scripts and the admin's "
            "styles answer 404.",
            hint="Wrap the HTTP application in ASGIStaticFilesHandler while DEBUG is on, as "
            "in docs/install.md (asgi.py); in production serve STATIC_ROOT from the web "
            "server or WhiteNoise.",
            id="durable_sessions.W010",
        )
    ]


@register()
def check_login_template(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The console sends visitors to LOGIN_URL; Django's LoginView there needs a template."""
    from django.urls import NoReverseMatch, Resolver404, resolve, reverse

    login_url = str(getattr(settings, "LOGIN_URL", "") or "")
    try:
        path = login_url if login_url.startswith("/") else reverse(login_url)
        match = resolve(path.split("?", 1)[0])
    except (NoReverseMatch, Resolver404, ImportError, ValueError):
        return []
    view = getattr(match.func, "view_class", None)
    if not isinstance(view, type) or not issubclass(view, import_string(AUTH_URLS_LOGIN)):
        return []
    template = getattr(view, "template_name", LOGIN_TEMPLATE)
    try:
        get_template(template)
    except TemplateDoesNotExist:
        return [
            Warning(
                f"LOGIN_URL ({login_url}) is Django's LoginView but no template "
                f"{template!r} exists: the console's login page would answer 500.",
                hint="Write that template (docs/install.md shows a minimal one), or keep "
                "handoff_console in INSTALLED_APPS with APP_DIRS on (it ships one).",
                id="durable_sessions.W011",
            )
        ]
    return []
