"""The traps of dropping the apps into an existing product, each caught or made harmless.

Tokens sent to a project without DRF's token app are refused (401), not served as an
anonymous visitor; the host's DRF throttling applies to the API; customers never learn an
operator's login name; the admin searches notes on any user model; and the system checks
name the setups that would otherwise fail silently (W009-W011).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from durable_sessions import host_checks, service
from durable_sessions.models import DurableSession
from handoff_console.admin import OperatorNoteAdmin
from handoff_console.models import OperatorNote
from tests.factories import make_user

pytestmark = pytest.mark.django_db

SESSIONS = "durable_sessions:session-create"


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def without_token_app(settings: Any) -> None:
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != host_checks.TOKEN_APP]


def ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


# --- tokens without the token app ------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_token_is_refused_with_401_when_tokens_are_not_enabled(settings, method):
    without_token_app(settings)
    client = Client(enforce_csrf_checks=True)
    response = getattr(client, method)(
        reverse(SESSIONS),
        data={"title": "t"},
        content_type="application/json",
        headers={"Authorization": "Token 0123456789abcdef"},
    )
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    body = response.json()["error"]
    assert body["code"] == "authentication_failed"
    assert host_checks.TOKEN_APP in body["message"]
    assert DurableSession.objects.count() == 0  # nothing created


def test_cookie_requests_are_unchanged_without_the_token_app(settings):
    without_token_app(settings)
    response = Client().get(reverse(SESSIONS))
    assert response.status_code == 200
    assert response.json()["results"] == []


def test_the_check_names_token_authentication_without_its_app(settings):
    settings.REST_FRAMEWORK = {"DEFAULT_AUTHENTICATION_CLASSES": [host_checks.TOKEN_AUTHENTICATION]}
    assert host_checks.check_token_app() == []
    without_token_app(settings)
    assert [m.id for m in host_checks.check_token_app()] == ["durable_sessions.W009"]


# --- the host's throttling -------------------------------------------------------------------


def test_the_hosts_drf_throttling_applies_to_the_api(settings):
    cache.clear()
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_CLASSES": ["tests.throttles.OnePerMinute"]}
    client = Client()
    assert client.get(reverse(SESSIONS)).status_code == 200
    refused = client.get(reverse(SESSIONS))
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused["Retry-After"]) >= 1
    settings.REST_FRAMEWORK = {}
    assert client.get(reverse(SESSIONS)).status_code == 200
    cache.clear()


# --- operator names --------------------------------------------------------------------------


def test_customers_see_the_team_alias_for_an_operator_without_a_full_name(ds_config):
    session = service.create_session(visitor="v1")
    login = get_user_model().objects.create_user("olga.k@example.com", password="pw")
    assert service.join_operator(session.id, login).display_name == "Support"

    ds_config(OPERATOR_ALIAS="Shop team")
    named = make_user("ivan")
    named.first_name, named.last_name = "Ivan", "Petrov"
    named.save()
    assert service.join_operator(session.id, named).display_name == "Ivan Petrov"
    other = service.create_session(visitor="v2")
    assert service.join_operator(other.id, login).display_name == "Shop team"


# --- the admin of notes ----------------------------------------------------------------------


def test_the_notes_admin_searches_the_user_models_own_fields(admin_client):
    from django.contrib import admin

    model_admin = OperatorNoteAdmin(OperatorNote, admin.site)
    fields = model_admin.get_search_fields(None)
    user_model = get_user_model()
    assert f"author__{user_model.USERNAME_FIELD}" in fields
    assert all(
        user_model._meta.get_field(f.split("__", 1)[1]) for f in fields if f.startswith("author__")
    )
    changelist = reverse("admin:handoff_console_operatornote_changelist")
    response = admin_client.get(changelist, {"q": "x"})
    assert response.status_code == 200


# --- static files and the login template -----------------------------------------------------


def test_the_check_warns_when_debug_asgi_serves_no_static_files(settings):
    settings.DEBUG = True
    settings.ASGI_APPLICATION = "tests.asgi_apps.bare.application"
    assert [m.id for m in host_checks.check_static_files_under_asgi()] == ["durable_sessions.W010"]
    settings.ASGI_APPLICATION = "tests.asgi_apps.static_served.application"
    assert host_checks.check_static_files_under_asgi() == []
    settings.DEBUG = False
    settings.ASGI_APPLICATION = "tests.asgi_apps.bare.application"
    assert host_checks.check_static_files_under_asgi() == []


def test_the_console_app_ships_a_login_page(settings, db):
    settings.LOGIN_URL = "login"
    # Only the apps' templates: the demo project's own login page is not there.
    settings.TEMPLATES = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
        }
    ]
    assert host_checks.check_login_template() == []
    page = Client().get(reverse("login"))
    assert page.status_code == 200
    assert b'name="password"' in page.content


def test_the_check_warns_when_the_login_view_has_no_template(settings):
    settings.LOGIN_URL = "login"
    settings.TEMPLATES = [
        {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": False}
    ]
    assert [m.id for m in host_checks.check_login_template()] == ["durable_sessions.W011"]


# --- an agent's failure --------------------------------------------------------------------


def test_operators_read_why_the_agent_failed_and_customers_do_not(client):
    from durable_sessions.models import AgentRun, RunStatus

    session = service.create_session(visitor="v1")
    detail = "connection to 10.0.0.5 failed: password=hunter2"
    AgentRun.objects.create(session=session, status=RunStatus.FAILED, error=detail)
    operator = make_user("olga", operator=True)
    client.force_login(operator)
    page = client.get(reverse("handoff_console:session", args=[session.id]))
    assert page.status_code == 200
    assert detail in page.content.decode()
    client.logout()
    events = client.get(reverse("durable_sessions:session-events", args=[session.id]))
    assert detail not in events.content.decode()
