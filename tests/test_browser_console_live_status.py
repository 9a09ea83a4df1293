"""Two console gaps, in the browser.

- An operator's availability reaches colleagues' consoles at once, pushed over the
  console feed, not on its next periodic refresh (made far away here, so only a push can
  deliver it).
- The handoff brief shows the agent's summary as markdown, sanitized like messages are.
"""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async

from durable_sessions import service
from tests.live import server_env
from tests.test_browser_console import WAIT_MS, log_in, open_page, screenshot
from tests.test_browser_console_workday import LAPTOP, named_operator

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(150),
]

db = database_sync_to_async


def slow_refresh_server(daphne):
    env = server_env()
    # No periodic refresh during the test: a colleague's change can only come as a push.
    env["HANDOFF_CONSOLE_JSON"] = json.dumps({"REFRESH_SECONDS": 3600})
    return daphne(env)


async def test_a_colleagues_availability_shows_without_a_reload(browser, daphne):
    server = slow_refresh_server(daphne)
    olga = await named_operator("olga", "Olga")
    await named_operator("piet", "Piet")
    first = await open_page(browser, server, **LAPTOP)
    second = await open_page(browser, server, **LAPTOP)
    await log_in(first, "olga")
    await log_in(second, "piet")
    row = f"#colleagues li[data-id='{olga.pk}']"
    await second.page.wait_for_selector(f"{row}[data-availability=online]", timeout=WAIT_MS)

    await first.page.select_option("#availability", "away")
    await second.page.wait_for_selector(f"{row}[data-availability=away]", timeout=WAIT_MS)
    await first.page.select_option("#availability", "offline")
    await second.page.wait_for_selector(f"{row}[data-availability=offline]", timeout=WAIT_MS)
    # Olga's own page keeps her choice.
    assert await first.page.input_value("#availability") == "offline"
    await screenshot(second.page, "console-colleague-availability-live")


def _handed_off_with_markdown_summary() -> str:
    session = service.create_session(visitor="md-visitor", title="Refund")
    customer = service.participant_for(session.id, "customer")
    service.post_message(session.id, author=customer, content="I want my money back")
    summary = (
        "The customer wants a **refund** for:\n\n- order 1001\n- order 1002\n\n"
        "<img src=x onerror=alert(1)>"
    )
    service.request_handoff(session.id, by=customer, reason="refund", summary=summary)
    return str(session.id)


async def test_the_brief_renders_the_agents_summary_as_safe_markdown(browser, daphne):
    server = slow_refresh_server(daphne)
    await named_operator("olga", "Olga")
    session_id = await db(_handed_off_with_markdown_summary)()
    console = await open_page(browser, server, **LAPTOP)
    await log_in(console, "olga")
    page = console.page
    await page.goto(f"/console/sessions/{session_id}/")
    await page.wait_for_selector("#brief-summary strong", timeout=WAIT_MS)
    assert await page.text_content("#brief-summary strong") == "refund"
    items = await page.locator("#brief-summary li").all_text_contents()
    assert items == ["order 1001", "order 1002"]
    # Raw markdown syntax is gone, and the injected image carries no handler.
    assert "**" not in await page.text_content("#brief-summary")
    handlers = await page.evaluate(
        "() => [...document.querySelectorAll('#brief-summary [onerror]')].length"
    )
    assert handlers == 0
    await screenshot(page, "console-brief-markdown")
