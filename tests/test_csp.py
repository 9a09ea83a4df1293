"""Every page the apps render carries a Content-Security-Policy and needs no inline code.

Message text is escaped everywhere; the policy is the second line: even markup that got
past escaping could run no script and set no style. That holds only if the pages
themselves keep every script and style in static files, which the HTML checks below prove.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import reverse

from durable_sessions import service
from durable_sessions.api.docs import PAGE_POLICY, STYLE
from durable_sessions.csp import ContentSecurityPolicyMiddleware, csp_exempt
from tests.factories import make_user

HEADER = "Content-Security-Policy"


class InlineCode(HTMLParser):
    """Collects inline scripts, style elements, style attributes and event handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and "src" not in names and names.get("type") != "application/json":
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style>")
        for name, _ in attrs:
            if name == "style" or name.startswith("on"):
                self.found.append(f"{tag}[{name}]")


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    return parser.found


@pytest.fixture
def pages(db) -> dict[str, tuple[Client, str]]:
    """Each page of the demo, the console and the admin, with a client allowed to see it."""
    customer = Client()
    customer.post("/chat/new/")
    session_id = customer.get("/").context["sessions"][0].id
    operator = Client()
    operator.force_login(make_user("olga", operator=True))
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("root", "", "pw"))
    service.request_handoff(session_id, by=None)
    return {
        "home": (customer, "/"),
        "chat": (customer, f"/chat/{session_id}/"),
        "login": (Client(), "/accounts/login/"),
        "continue": (Client(), "/chat/continue/unknown/"),
        "console queue": (operator, reverse("handoff_console:queue")),
        "console session": (operator, reverse("handoff_console:session", args=[session_id])),
        "admin index": (admin, "/admin/"),
        "admin session": (
            admin,
            reverse("admin:durable_sessions_durablesession_change", args=[session_id]),
        ),
        "admin sessions": (admin, reverse("admin:durable_sessions_durablesession_changelist")),
        "admin grants": (admin, reverse("admin:durable_sessions_devicegrant_changelist")),
        "api docs": (Client(), "/ds/api/docs/"),
    }


def test_every_page_has_the_policy_and_no_inline_script_or_style(pages):
    for name, (client, path) in pages.items():
        response = client.get(path)
        assert response.status_code in (200, 404), (name, response.status_code)
        policy = response[HEADER]
        assert "unsafe-inline" not in policy, name
        assert re.search(r"script-src '(self|none)'|default-src 'none'", policy), name
        # The API docs page has one style sheet, allowed by its hash (tested below).
        allowed = ["<style>"] if name == "api docs" else []
        assert inline_code(response.content.decode()) == allowed, name


def test_the_api_docs_page_allows_exactly_its_own_style_sheet(pages):
    client, path = pages["api docs"]
    response = client.get(path)
    assert response[HEADER] == PAGE_POLICY
    assert f"<style>{STYLE}</style>" in response.content.decode()  # the hash covers it all


def test_json_answers_carry_the_policy_too(db):
    assert "script-src 'self'" in Client().get("/ds/sessions/")[HEADER]


def ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def own_policy(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("ok")
    response[HEADER] = "default-src 'none'"
    return response


def test_the_middleware_keeps_a_views_own_policy_and_skips_exempt_views(ds_config):
    request = HttpRequest()
    assert "default-src 'self'" in ContentSecurityPolicyMiddleware(ok)(request)[HEADER]
    assert ContentSecurityPolicyMiddleware(own_policy)(request)[HEADER] == "default-src 'none'"
    assert HEADER not in ContentSecurityPolicyMiddleware(csp_exempt(ok))(request)
    ds_config(CONTENT_SECURITY_POLICY_REPORT_ONLY=True)
    reported = ContentSecurityPolicyMiddleware(ok)(request)
    assert HEADER not in reported and "default-src" in reported[f"{HEADER}-Report-Only"]


def test_the_middleware_works_under_asgi():
    async def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    middleware = ContentSecurityPolicyMiddleware(view)
    response = async_to_sync(middleware)(HttpRequest())
    assert "default-src 'self'" in response[HEADER]
