"""The customer page, the widget and the console in German (Accept-Language: de).

Texts of the templates and of the browser modules (the JavaScript catalog) are German,
including ones the modules write as things happen (a status line, a plural); no known
English word of the interface is left on the main screens; axe-core passes in German too.
Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re

import pytest
from channels.db import database_sync_to_async
from playwright.async_api import Page

from durable_sessions import service
from tests import services
from tests.test_browser_accessibility import violations
from tests.test_browser_console import WAIT_MS, open_page, screenshot
from tests.test_browser_console_workday import LAPTOP, named_operator, quick_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]

db = database_sync_to_async
GERMAN = {"locale": "de-DE", "extra_http_headers": {"Accept-Language": "de"}}
# Words of the English interface; none may show on a German screen (as a whole word).
ENGLISH = [
    "Send",
    "Queue",
    "Conversation",
    "Take over",
    "Connecting",
    "Connected",
    "Log out",
    "Customer",
    "Search",
    "Close",
    "Message",
    "Talk to",
    "Start a",
    "waiting",
    "Nobody",
    "Colleagues",
    "Reply",
    "Private notes",
    "Handoff",
    "Summary",
    "Enable alerts",
    "Transfer",
    "Not connected",
]
# Texts that are data, not interface (names, titles, message text written by the tests).
VISIBLE_TEXT = "() => document.body.innerText"


def english_left(text: str, allowed: tuple[str, ...] = ()) -> list[str]:
    for data in allowed:
        text = text.replace(data, "")
    return [word for word in ENGLISH if re.search(rf"\b{re.escape(word)}\b", text)]


def _waiting_sessions(count: int) -> list[str]:
    ids = []
    for n in range(count):
        session = service.create_session(visitor=f"de-visitor-{n}", title=f"Bestellung {n}")
        customer = service.participant_for(session.id, "customer")
        service.post_message(session.id, author=customer, content=f"Frage {n}")
        service.request_handoff(session.id, by=customer, reason="Grund", summary="**wichtig**")
        ids.append(str(session.id))
    return ids


async def test_customer_page_and_widget_speak_german(browser, daphne):
    axe = services.require_axe()
    server = quick_server(daphne)
    customer = await open_page(browser, server, **LAPTOP, **GERMAN, bypass_csp=False)
    page: Page = customer.page
    await page.goto("/")
    assert await page.get_attribute("html", "lang") == "de"
    await page.get_by_role("button", name="Unterhaltung beginnen").click()
    await page.wait_for_selector("#chat[data-status=live]", timeout=WAIT_MS)
    # Written by chat.js from the catalog once the connection is live.
    await page.wait_for_selector("#connection:text('Verbunden')", timeout=WAIT_MS)
    assert await page.text_content("#send") == "Senden"
    assert await page.get_attribute("#text", "placeholder") == "Nachricht schreiben"
    await page.fill("#text", "Hallo")
    await page.click("#send")
    await page.wait_for_selector(
        "#log li[data-role=assistant][data-state=complete]", timeout=WAIT_MS
    )
    author = await page.locator("#log li[data-role=user] .author").first.text_content()
    assert author == "Sie"
    shown = await page.evaluate(VISIBLE_TEXT)
    assert english_left(shown, allowed=("Hallo", "Sorry to hear that. Let me check.")) == []
    await screenshot(page, "german-chat")

    await page.goto("/shop/")
    await page.wait_for_selector("[data-ds-chat][data-ready=true]", timeout=WAIT_MS)
    assert await page.text_content(".ds-chat-launcher-label") == "Chat"
    await page.click(".ds-chat-launcher")
    await page.wait_for_selector(".ds-chat-status:text('Verbunden')", timeout=WAIT_MS)
    assert await page.text_content(".ds-chat-human") == "Mit einem Menschen sprechen"
    assert await page.text_content(".ds-chat-title") == "Shop-Support"
    panel = await page.inner_text(".ds-chat-panel")
    assert english_left(panel, allowed=("Hallo", "Sorry to hear that. Let me check.")) == []
    await screenshot(page, "german-widget")

    # axe in German (its script is injected, so this context allows it past the policy).
    checked = await open_page(browser, server, **LAPTOP, **GERMAN, bypass_csp=True)
    await checked.page.goto("/shop/")
    await checked.page.wait_for_selector("[data-ds-chat][data-ready=true]", timeout=WAIT_MS)
    await checked.page.click(".ds-chat-launcher")
    assert await violations(checked.page, axe) == []
    await checked.page.goto("/")
    assert await violations(checked.page, axe) == []


async def test_console_speaks_german_with_plurals(browser, daphne):
    axe = services.require_axe()
    server = quick_server(daphne)
    await named_operator("olga", "Olga")
    ids = await db(_waiting_sessions)(2)
    console = await open_page(browser, server, **LAPTOP, **GERMAN, bypass_csp=True)
    page = console.page
    await page.goto("/console/")
    await page.wait_for_url(re.compile(r"/accounts/login/\?next="))
    assert await page.text_content("main h1") == "Anmelden"
    await page.fill("#id_username", "olga")
    await page.fill("#id_password", "pw-olga")
    await page.locator("main form button[type=submit]").click()
    await page.wait_for_url(re.compile(r"/console/$"))
    await page.wait_for_selector("#feed-status[data-state=live]", timeout=WAIT_MS)
    assert await page.get_attribute("html", "lang") == "de"
    # The tab title's count is a plural written by the module: "2 warten".
    await page.wait_for_function("() => document.title.startsWith('(2 warten)')", timeout=WAIT_MS)
    assert "Warteschlange" in await page.title()
    assert await page.text_content("#h-waiting") == "Braucht einen Menschen 2"
    badges = await page.locator("#section-waiting .badge.state").all_text_contents()
    assert badges == ["braucht einen Menschen", "braucht einen Menschen"]
    shown = await page.evaluate(VISIBLE_TEXT)
    assert english_left(shown, allowed=("Bestellung", "Frage", "Grund")) == []
    await screenshot(page, "german-queue")
    assert await violations(page, axe) == []

    await page.goto(f"/console/sessions/{ids[0]}/")
    await page.wait_for_selector("#connection[data-status], #connection", timeout=WAIT_MS)
    await page.wait_for_selector("#connection:text('Live')", timeout=WAIT_MS)
    assert await page.text_content("#take-over") == "Übernehmen"
    hint = await page.text_content("#reply-hint")
    assert hint.startswith("Die Kund:in wartet auf einen Menschen")
    assert await page.text_content("#brief-summary-label") == "Zusammenfassung"
    shown = await page.evaluate(VISIBLE_TEXT)
    assert english_left(shown, allowed=("Bestellung", "Frage", "Grund")) == []
    await screenshot(page, "german-console-session")
    assert await violations(page, axe) == []
