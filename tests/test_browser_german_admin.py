"""The admin and the console's tool calls in German (Accept-Language: de, locale de-DE).

The session list, a session's page (transcript, handoffs, runs, participants) and its event
log show German labels, columns, filters, actions and states; no known English word of
their interface is left; axe-core finds nothing serious or critical on them. The console
names a tool call's state and who answers its approval in German. Screenshots go to
test-artifacts/screenshots/.
"""

from __future__ import annotations

import re

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from playwright.async_api import Page

from tests import services
from tests.test_api_approvals import waiting_call
from tests.test_browser_accessibility import violations
from tests.test_browser_console import WAIT_MS, open_page, screenshot
from tests.test_browser_console_workday import LAPTOP, named_operator, quick_server
from tests.test_browser_german import GERMAN, VISIBLE_TEXT

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]

db = database_sync_to_async
TITLE = "Bestellung 1001"
# Words of the English admin written by this project; none may show on a German page.
ADMIN_ENGLISH = [
    "session",
    "sessions",
    "Session",
    "owner",
    "Control",
    "Activity",
    "Handoff",
    "Transcript",
    "Participants",
    "Event log",
    "event log",
    "Tool call",
    "Awaiting approval",
    "approval by",
    "pending",
    "Waiting for a human",
    "waiting for a human",
    "last message",
    "last activity",
    "Close",
    "Escalate",
    "Return",
    "Export",
    "Agent runs",
    "Reasoning",
    "created at",
    "payload",
    "compacted",
    "events",
]
# Data the tests wrote (the customer's text and visitor id, the tool's name and input) and
# the product's name: not interface text.
DATA = (TITLE, "refund order 1001", "refund_order", '"order_id"', "v-owner")
DATA += ("Durable Sessions",)
# What the demo's agent may record on its run while the test's own reply is open: data too.
DATA += ("an assistant reply is already streaming in this session",)


def english_left(text: str) -> list[str]:
    for data in DATA:
        text = re.sub(re.escape(data), "", text, flags=re.IGNORECASE)
    # Case-insensitive: the admin shows some captions in capitals (CSS).
    found = [w for w in ADMIN_ENGLISH if re.search(rf"\b{re.escape(w)}\b", text, re.IGNORECASE)]
    return sorted(set(found))


def _a_session_with_a_tool_call() -> str:
    """A session whose AI reply waits for a tool call's approval."""
    get_user_model().objects.create_superuser("root", "", "pw-root")
    session, _call = waiting_call()
    type(session).objects.filter(pk=session.pk).update(title=TITLE)
    return str(session.pk)


async def _log_in(page: Page, path: str, username: str) -> None:
    await page.goto(path)
    await page.fill("#id_username", username)
    await page.fill("#id_password", f"pw-{username}")
    await page.keyboard.press("Enter")
    await page.wait_for_url(lambda url: "/login/" not in url, timeout=WAIT_MS)


async def test_admin_session_list_page_and_event_log_speak_german(browser, daphne):
    axe = services.require_axe()
    server = quick_server(daphne)
    session_id = await db(_a_session_with_a_tool_call)()
    admin = await open_page(browser, server, **LAPTOP, **GERMAN, bypass_csp=True)
    page = admin.page
    await _log_in(page, "/admin/login/?next=/admin/", "root")
    assert await page.get_attribute("html", "lang") == "de"

    # The index names the apps and models in German.
    # textContent: the admin writes captions in capitals with CSS only.
    index = await page.text_content("#content-main")
    assert "Durable Sessions" in index and "Ereignisse" in index
    assert "Übergabe-Konsole" in index and "Textbausteine" in index

    await page.goto("/admin/durable_sessions/durablesession/")
    await page.wait_for_selector("#result_list", timeout=WAIT_MS)
    headers = [
        h.strip() for h in await page.locator("#result_list thead th .text").all_text_contents()
    ]
    for column in ("Unterhaltung", "Eigentümer:in", "Zuständigkeit", "Letzte Aktivität"):
        assert column in headers, headers
    assert "Wartet auf einen Menschen" in headers and "Letzte Nachricht" in headers
    row = await page.inner_text("#result_list tbody tr")
    assert TITLE in row and "KI-Agent" in row and "Offen" in row
    actions = await page.locator("select[name=action] option").all_inner_texts()
    assert "Ausgewählte Unterhaltungen schließen" in actions
    assert "Ausgewählte Unterhaltungen an die KI zurückgeben" in actions
    filters = await page.inner_text("#changelist-filter")
    assert "Nach Zuständigkeit" in filters and "Nach Status" in filters
    assert "eine eingefügte Unterhaltungs-ID" in await page.inner_text("#changelist-search")
    shown = await page.evaluate(VISIBLE_TEXT)
    assert english_left(shown) == []
    await screenshot(page, "german-admin-sessions")
    assert await violations(page, axe) == []

    await page.click(f"#result_list a[href*='{session_id}']")
    await page.wait_for_selector("#transcript", timeout=WAIT_MS)
    assert await page.text_content("#transcript h2") == "Verlauf (2 Nachrichten)"
    assert await page.text_content("#participants h2") == "Teilnehmende"
    assert await page.text_content("#handoffs h2") == "Verlauf der Übergaben"
    assert await page.text_content("#runs h2") == "Läufe des Agenten"
    tool = await page.inner_text("#transcript .ds-part-tool")
    assert "Werkzeugaufruf refund_order (Wartet auf Freigabe)" in tool
    assert "Freigabe durch die Kund:in oder eine Mitarbeiter:in: ausstehend" in tool
    buttons = await page.locator(".ds-actions button").all_inner_texts()
    assert "Unterhaltung schließen" in buttons and "Als JSON exportieren" in buttons
    handoffs = await page.inner_text("#handoffs")
    assert "Der KI-Agent war durchgehend zuständig." in handoffs
    assert "An einen Menschen übergeben" in buttons
    sections = await page.locator("#content-main fieldset h2").all_text_contents()
    assert {"Übergabe", "Aktivität", "Metadaten"} <= {s.strip() for s in sections}, sections
    shown = await page.evaluate(VISIBLE_TEXT)
    assert english_left(shown) == []
    await screenshot(page, "german-admin-session")
    assert await violations(page, axe) == []

    await page.get_by_role("link", name="Ereignisprotokoll öffnen").click()
    await page.wait_for_selector("#result_list", timeout=WAIT_MS)
    assert (await page.text_content("#content h1")).startswith(f"Ereignisprotokoll von {TITLE}")
    headers = [
        h.strip() for h in await page.locator("#result_list thead th .text").all_text_contents()
    ]
    for column in ("Seq", "Typ", "Unterhaltung", "Erstellt am", "Nutzdaten"):
        assert column in headers, headers
    assert "Nach Typ" in await page.inner_text("#changelist-filter")
    # Event types and payloads are data (the protocol's names); the page's own words are not.
    own_words = "#content h1, #result_list thead, #changelist-filter h2, #changelist-filter h3"
    own = await page.locator(f"{own_words}, .breadcrumbs, .paginator").all_text_contents()
    assert english_left(" ".join(own)) == []
    await screenshot(page, "german-admin-event-log")
    assert await violations(page, axe) == []


async def test_console_names_a_tool_calls_state_in_german(browser, daphne):
    axe = services.require_axe()
    server = quick_server(daphne)
    await named_operator("olga", "Olga")
    session_id = await db(_a_session_with_a_tool_call)()
    console = await open_page(browser, server, **LAPTOP, **GERMAN, bypass_csp=True)
    page = console.page
    await _log_in(page, "/accounts/login/?next=/console/", "olga")
    await page.goto(f"/console/sessions/{session_id}/")
    card = "#transcript .tool-card[data-state='awaiting-approval']"
    await page.wait_for_selector(card, timeout=WAIT_MS)
    assert (await page.text_content(f"{card} .tool-state")).strip() == "Wartet auf Freigabe"
    approval = await page.inner_text(f"{card} .approval")
    assert approval.startswith("Wartet auf Freigabe durch die Kund:in oder eine Mitarbeiter:in")
    assert await page.text_content(f"{card} button.approve") == "Freigeben"
    await screenshot(page, "german-console-tool-call")
    assert await violations(page, axe) == []
