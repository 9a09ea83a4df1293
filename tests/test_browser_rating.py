"""The customer rates a closed conversation on the demo page (Chromium, real Daphne); the
rating shows there on every device after a reload, and in the console's list and
conversation."""

from __future__ import annotations

from channels.db import database_sync_to_async

from durable_sessions import service
from durable_sessions.models import SessionRating
from tests import services
from tests.test_browser_accessibility import violations
from tests.test_browser_chat import (
    PHONE,
    SHORT_REPLY,
    WAIT_MS,
    agent_server,
    browser_test,
    new_context,
    no_trouble,
    open_page,
    operator_named,
    screenshot,
    send,
    start_chat,
)
from tests.test_browser_console import log_in, open_session


@browser_test
async def test_the_customer_rates_after_close_and_operators_see_it(browser, daphne):
    axe = services.require_axe()
    server = agent_server(daphne, reply=SHORT_REPLY)
    # axe is injected as an inline script: these contexts let it in.
    context = await new_context(browser, server, **PHONE, bypass_csp=True)
    tab = await open_page(context)
    page = tab.page
    session_id = await start_chat(tab)
    await send(page, "hello")
    await page.wait_for_selector("#log li[data-role=assistant][data-state=complete]")
    assert await page.locator("#rating").is_hidden()  # open: nothing to rate yet

    await database_sync_to_async(service.close_session)(session_id)
    await page.wait_for_selector("#rating:not([hidden])", timeout=WAIT_MS)
    await page.click("#rate")  # no score chosen: the browser asks for one, nothing is sent
    assert not await database_sync_to_async(SessionRating.objects.exists)()
    assert await violations(page, axe) == []  # the rating form, as the customer sees it
    await page.check("#rating input[value='4']")
    await page.fill("#rating-comment", "Quick and **kind**")
    await page.click("#rate")
    await page.wait_for_selector("#rated:text('you rated this conversation 4 out of 5')")
    assert await page.locator("#rating").is_hidden()
    await screenshot(page, "rating-customer-phone")
    await page.reload()
    await page.wait_for_selector("#rated:text('4 out of 5')", timeout=WAIT_MS)
    rating = await database_sync_to_async(SessionRating.objects.get)(session_id=session_id)
    assert (rating.score, rating.comment) == (4, "Quick and **kind**")

    await operator_named("olga", "Olga")
    console_context = await browser.new_context(base_url=server.http, bypass_csp=True)
    console = await open_page(console_context)
    await log_in(console, "olga")
    row = f"#section-closed li[data-id='{session_id}'] .rating"
    await console.page.wait_for_selector(row, timeout=WAIT_MS)
    assert await console.page.text_content(row) == "★ 4/5"
    await open_session(console, session_id)
    assert await console.page.text_content("#rating-score") == "4 out of 5"
    assert await console.page.text_content("#rating-comment") == "Quick and **kind**"
    assert await violations(console.page, axe) == []
    no_trouble(tab, console)
    await context.close()
    await console_context.close()
