"""Every page passes axe-core with no serious or critical violation.

axe-core (pinned in tests/package.json; ``npm ci --prefix tests``) is injected by
Playwright into each page in Chromium, once the page is live: the customer's home and chat
pages, the login page, the console's queue (with rows in every state) and a session (with
its transcript, brief, notes and the shortcut help open), on a laptop and a phone.
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from playwright.async_api import Page

from durable_sessions import service
from handoff_console.notes import add_note
from tests import services
from tests.test_browser_console import WAIT_MS, log_in, open_page, start_chat
from tests.test_browser_console_workday import LAPTOP, PHONE, named_operator, quick_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(150),
]

db = database_sync_to_async
BLOCKING = {"serious", "critical"}


async def violations(page: Page, axe: str) -> list[dict[str, Any]]:
    """axe-core's serious and critical findings on the page as it is now."""
    await page.add_script_tag(path=axe)
    found = await page.evaluate(
        """async () => {
          const result = await axe.run(document, {
            runOnly: {
              type: "tag",
              values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
            },
          });
          if (!result.passes.length) throw new Error("axe checked nothing");
          return result.violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 3).map(n => n.target.join(" ")),
          }));
        }"""
    )
    return [v for v in found if v["impact"] in BLOCKING]


def _a_busy_console(username: str) -> str:
    """Sessions in several states, one of them with a transcript, a brief and a note."""
    from django.contrib.auth import get_user_model

    olga = get_user_model().objects.get(username=username)
    main = None
    for n, state in enumerate(("queued", "mine", "ai", "closed")):
        session = service.create_session(visitor=f"visitor-{n}", title=f"Conversation {n}")
        customer = service.participant_for(session.id, "customer")
        service.post_message(session.id, author=customer, content=f"question {n}")
        reply = service.start_assistant_message(session.id)
        service.append_delta(reply, "an answer")
        service.finish_assistant_message(reply)
        if state != "ai":
            service.request_handoff(session.id, by=customer, reason="asked", summary="a summary")
        if state in ("mine", "closed"):
            service.take_over(session.id, olga)
        if state == "closed":
            service.close_session(session.id)
        if state == "mine":
            add_note(session.id, author=olga, text="a note")
            main = str(session.id)
    assert main is not None
    return main


@pytest.mark.parametrize("device", ["laptop", "phone"])
async def test_every_page_has_no_serious_or_critical_axe_violation(browser, daphne, device):
    axe = services.require_axe()
    server = quick_server(daphne)
    await named_operator("olga", "Olga")
    session_id = await db(_a_busy_console)("olga")
    # The pages allow no inline script; axe is injected as one, so this context lets it in.
    viewport = {**(LAPTOP if device == "laptop" else PHONE), "bypass_csp": True}
    found: dict[str, list[dict[str, Any]]] = {}

    customer = await open_page(browser, server, **viewport)
    await customer.page.goto("/")
    found["home"] = await violations(customer.page, axe)
    await start_chat(customer)
    found["chat"] = await violations(customer.page, axe)

    console = await open_page(browser, server, **viewport)
    await console.page.goto("/accounts/login/")
    found["login"] = await violations(console.page, axe)
    await log_in(console, "olga")
    await console.page.wait_for_selector("#section-closed li", timeout=WAIT_MS)
    found["queue"] = await violations(console.page, axe)
    await console.page.goto(f"/console/sessions/{session_id}/")
    await console.page.wait_for_selector("#connection:text('Live')", timeout=WAIT_MS)
    await console.page.wait_for_selector("#transcript li.role-assistant")
    found["session"] = await violations(console.page, axe)
    await console.page.keyboard.press("?")
    await console.page.wait_for_selector("#shortcuts[open]")
    found["shortcuts"] = await violations(console.page, axe)

    assert {page: v for page, v in found.items() if v} == {}
