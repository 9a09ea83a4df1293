"""Each page loads in Chromium under its Content-Security-Policy with nothing refused.

The policy allows no inline script or style; a page that still had some would work less
(or not at all) and the browser would report a ``securitypolicyviolation``. Every page of
the demo, the console, the admin and the API reference is loaded with a listener for those
reports and for console errors, and must end with none.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from playwright.async_api import Page

from durable_sessions import service
from tests.factories import make_user
from tests.live import DaphneServer, server_env

# Installed before any page script: collects the browser's reports of refused content.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


@database_sync_to_async
def accounts() -> str:
    make_user("olga", operator=True)
    get_user_model().objects.create_superuser("root", "", "pw-root")
    session = service.create_session(visitor="someone", title="A customer")
    service.request_handoff(session.id, by=None, reason="wants a person")
    return str(session.id)


async def log_in(page: Page, path: str, username: str) -> None:
    await page.goto(path)
    await page.fill("#id_username", username)
    await page.fill("#id_password", f"pw-{username}")
    await page.keyboard.press("Enter")
    await page.wait_for_url(lambda url: "/login/" not in url, timeout=30_000)


async def load(page: Page, path: str, ready: str, problems: list[str]) -> None:
    response = await page.goto(path)
    assert response is not None and response.ok, path
    header = await response.header_value("content-security-policy")
    assert header and "unsafe-inline" not in header, (path, header)
    await page.wait_for_selector(ready, timeout=30_000)
    await page.wait_for_load_state("networkidle")
    violations = await page.evaluate("window.__violations")
    problems.extend(f"{path}: {v}" for v in violations)


@pytest.mark.browser
@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
async def test_every_page_loads_under_its_policy_with_nothing_refused(
    browser, daphne: Callable[..., DaphneServer]
):
    session_id = await accounts()
    server = daphne(server_env())
    problems: list[str] = []

    def console_error(kind: str, text: str) -> None:
        # A failed load is reported with its address by failed() below.
        if kind == "error" and not text.startswith("Failed to load resource"):
            problems.append(f"console: {text}")

    def failed(url: str, status: int) -> None:
        # Browsers ask for /favicon.ico on their own: the demo has none.
        if status >= 400 and not url.endswith("/favicon.ico"):
            problems.append(f"{status}: {url}")

    async def context_page() -> Page:
        context = await browser.new_context(base_url=server.http)
        await context.add_init_script(RECORD_VIOLATIONS)
        page = await context.new_page()
        page.on("console", lambda m: console_error(m.type, m.text))
        page.on("response", lambda r: failed(r.url, r.status))
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        return page

    customer = await context_page()
    await load(customer, "/", "text=Start a conversation", problems)
    await customer.get_by_role("button", name="Start a conversation").click()
    await customer.wait_for_selector("#chat[data-status=live]", timeout=30_000)
    await load(
        customer, customer.url.removeprefix(server.http), "#chat[data-status=live]", problems
    )
    await customer.click("#handover")  # the device links use the API from chat.js
    await customer.wait_for_selector("#handover-box:not([hidden])")
    assert await customer.evaluate("window.__violations") == []

    operator = await context_page()
    await log_in(operator, "/accounts/login/?next=/console/", "olga")
    await load(operator, "/console/", "#section-waiting li", problems)
    await load(operator, f"/console/sessions/{session_id}/", "#transcript li", problems)

    admin = await context_page()
    await log_in(admin, "/admin/login/?next=/admin/", "root")
    await load(admin, "/admin/", "#content", problems)
    session_page = f"/admin/durable_sessions/durablesession/{session_id}/change/"
    await load(admin, session_page, "#transcript", problems)
    await load(admin, "/admin/durable_sessions/durablesession/", "#result_list", problems)

    docs = await context_page()
    await load(docs, "/ds/api/docs/", "h1", problems)
    color = await docs.evaluate("getComputedStyle(document.querySelector('article')).borderStyle")
    assert color == "solid"  # its style sheet applied: allowed by the hash

    assert problems == []
