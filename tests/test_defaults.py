"""Safe defaults: who is an operator, the demo's settings, login throttling, deploy checks."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

from durable_sessions.adapter import get_adapter
from durable_sessions.app_settings import DurableSessionsSettings
from durable_sessions.checks import (
    check_allowed_hosts,
    check_content_security_policy,
    check_staff_are_operators,
)
from project.env import local_secret_key
from project.login import _key
from tests.factories import make_user

ROOT = Path(__file__).resolve().parent.parent
CSP_MIDDLEWARE = "durable_sessions.csp.ContentSecurityPolicyMiddleware"


# --- staff and operators -----------------------------------------------------------------


@pytest.mark.django_db
def test_staff_status_alone_is_not_an_operator_and_turning_it_on_warns(ds_config):
    assert DurableSessionsSettings.definitions()["STAFF_ARE_OPERATORS"].default is False
    staff = make_user("sam", staff=True)
    assert not get_adapter().is_operator(staff)
    assert check_staff_are_operators() == []
    ds_config(STAFF_ARE_OPERATORS=True)
    assert get_adapter().is_operator(staff)
    [warning] = check_staff_are_operators()
    assert warning.id == "durable_sessions.W020"


@pytest.mark.django_db
def test_the_demo_admin_is_an_operator_by_permission():
    call_command("seed_demo", stdout=StringIO())
    admin = get_user_model().objects.get(username="admin")
    admin.is_superuser = False  # the permission, not superuser status, makes the operator
    admin.save()
    admin = get_user_model().objects.get(pk=admin.pk)
    assert get_adapter().is_operator(admin)


# --- the demo project's settings -----------------------------------------------------------


def demo_settings(env: dict[str, str], *names: str) -> dict[str, object]:
    """Settings of the demo project as a fresh process reads them from ``env``."""
    code = (
        "import json, django; from django.conf import settings; django.setup(); "
        f"print(json.dumps({{n: getattr(settings, n) for n in {list(names)!r}}}, default=str))"
    )
    keep = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**keep, "DJANGO_SETTINGS_MODULE": "project.settings", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_demo_runs_without_debug_and_with_secure_cookies_unless_told():
    names = ("DEBUG", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECRET_KEY", "MIDDLEWARE")
    default = demo_settings({}, *names)
    assert default["DEBUG"] is False
    assert default["SESSION_COOKIE_SECURE"] is True and default["CSRF_COOKIE_SECURE"] is True
    assert CSP_MIDDLEWARE in default["MIDDLEWARE"]
    # No key published with the source: the checkout's own, from its ignored file.
    assert default["SECRET_KEY"] == (ROOT / ".secret_key").read_text().strip()
    assert "django-insecure" not in default["SECRET_KEY"]
    debug = demo_settings({"DEBUG": "1", "SECRET_KEY": "from-the-environment"}, *names)
    assert debug["DEBUG"] is True and debug["SESSION_COOKIE_SECURE"] is False
    assert debug["SECRET_KEY"] == "from-the-environment"


def test_no_public_secret_key_is_left_in_the_sources():
    for path in [*ROOT.glob("project/*.py"), ROOT / "Makefile"]:
        assert "django-insecure" not in path.read_text(), path
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".secret_key"], cwd=ROOT, check=False
    ).returncode
    assert ignored == 0, ".secret_key must be ignored by git"


def test_a_checkout_makes_its_secret_key_once_readable_by_its_owner_only(tmp_path):
    path = tmp_path / ".secret_key"
    key = local_secret_key(path)
    assert len(key) >= 50
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert local_secret_key(path) == key
    assert local_secret_key(tmp_path / "other") != key


# --- login throttling -----------------------------------------------------------------------


@pytest.fixture
def clean_login_counts():
    keys = [_key("user", "tina", "127.0.0.1"), _key("addr", "127.0.0.1")]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_logins_are_refused_after_five_failures_even_with_the_right_password(
    clean_login_counts, path
):
    user = make_user("tina", staff=True)
    client = Client()
    for _ in range(5):
        answer = client.post(path, {"username": "tina", "password": "wrong"})
        assert answer.status_code == 200
    refused = client.post(path, {"username": "Tina", "password": "pw-tina"})
    assert refused.status_code == 429
    assert b"Too many failed attempts" in refused.content
    assert "_auth_user_id" not in client.session
    cache.delete(_key("user", "tina", "127.0.0.1"))
    allowed = client.post(path, {"username": "tina", "password": "pw-tina"})
    assert allowed.status_code == 302 and int(client.session["_auth_user_id"]) == user.pk


# --- deploy checks ----------------------------------------------------------------------------


def test_deploy_checks_warn_without_a_content_security_policy(settings, ds_config):
    assert check_content_security_policy() == []
    ds_config(CONTENT_SECURITY_POLICY="default-src 'self'; script-src 'self' 'unsafe-inline'")
    [weak] = check_content_security_policy()
    assert weak.id == "durable_sessions.W022" and "'unsafe-inline'" in weak.msg
    ds_config(
        CONTENT_SECURITY_POLICY="default-src 'self'", CONTENT_SECURITY_POLICY_REPORT_ONLY=True
    )
    assert [w.id for w in check_content_security_policy()] == ["durable_sessions.W022"]
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != CSP_MIDDLEWARE]
    [missing] = check_content_security_policy()
    assert missing.id == "durable_sessions.W021"


def test_deploy_checks_warn_about_a_wildcard_host_and_the_websocket_origin(settings):
    assert check_allowed_hosts() == []
    settings.ALLOWED_HOSTS = ["*"]
    [warning] = check_allowed_hosts()
    assert warning.id == "durable_sessions.W023" and "Origin" in warning.msg


def test_the_deploy_checks_are_registered_as_such():
    from django.core.checks.registry import registry

    deploy = registry.get_checks(include_deployment_checks=True)
    normal = registry.get_checks(include_deployment_checks=False)
    for check in (check_content_security_policy, check_allowed_hosts):
        assert check in deploy and check not in normal
    assert check_staff_are_operators in normal
