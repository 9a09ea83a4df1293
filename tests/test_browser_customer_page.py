"""The demo's customer page keeps a returning customer oriented, and tells the truth.

A long conversation opens at its latest message with its times shown; the connection
state and the banner stay in view while it scrolls; the "taken over" banner goes on hand
back; a closed conversation disables (visibly) what cannot be used any more; making a
device link offline says what to do; the phone header keeps "Log out" on one line; and
no page answers 404 (the favicon included).
"""

from __future__ import annotations

from channels.db import database_sync_to_async

from durable_sessions import service
from tests.factories import make_user
from tests.test_browser_chat import (
    PHONE,
    SHORT_REPLY,
    WAIT_MS,
    agent_server,
    browser_test,
    new_context,
    no_trouble,
    open_page,
    screenshot,
    send,
    start_chat,
)


def failed_responses(page) -> list[str]:
    failed: list[str] = []
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
    return failed


@browser_test
async def test_a_returning_customer_lands_at_the_latest_message_and_sees_the_truth(browser, daphne):
    server = agent_server(daphne, reply=SHORT_REPLY)
    context = await new_context(browser, server, **PHONE)
    tab = await open_page(context)
    failed = failed_responses(tab.page)
    page = tab.page
    session_id = await start_chat(tab)
    await send(page, "hello")
    await page.wait_for_selector("#log li[data-role=assistant][data-state=complete]")
    for n in range(40):
        await database_sync_to_async(service.post_system_message)(session_id, f"update {n}")

    await page.reload()
    await page.wait_for_selector("#chat[data-status=live]", timeout=WAIT_MS)
    await page.wait_for_selector("#log li:has-text('update 39')", timeout=WAIT_MS)
    at_bottom = "() => { const r = document.scrollingElement;"
    at_bottom += " return r.scrollHeight - r.scrollTop - r.clientHeight < 80; }"
    await page.wait_for_function(at_bottom, timeout=WAIT_MS)
    assert await page.locator("#log li[data-role=user] .time").text_content()
    # The connection state stays in view, scrolled down as it is.
    assert await page.locator("#connection").is_visible()
    box = await page.locator("#connection").bounding_box()
    assert box is not None and 0 <= box["y"] < PHONE["viewport"]["height"]

    # Taken over, then handed back: the banner comes and goes.
    olga = await database_sync_to_async(make_user)("olga", operator=True)
    await database_sync_to_async(service.take_over)(session_id, operator=olga)
    await page.wait_for_selector("#banner[data-kind=human]", timeout=WAIT_MS)
    await database_sync_to_async(service.hand_back)(session_id, operator=olga)
    await page.wait_for_selector("#banner", state="hidden", timeout=WAIT_MS)

    # Offline, a device link cannot be made: the page says what to do.
    await context.set_offline(True)
    await page.click("#handover")
    notice = page.locator("#notice")
    await notice.filter(has_text="offline").wait_for(timeout=WAIT_MS)
    assert "Failed to fetch" not in (await notice.text_content() or "")
    await context.set_offline(False)
    await page.wait_for_selector("#chat[data-status=live]", timeout=WAIT_MS)

    # Closed: nothing that cannot work any more stays enabled, nobody is shown as here.
    await database_sync_to_async(service.close_session)(session_id, reason="done")
    await page.wait_for_selector("#banner[data-kind=closed]", timeout=WAIT_MS)
    for control in ("#send", "#text", "#human", "#handover"):
        assert await page.is_disabled(control), control
    opacity = await page.eval_on_selector("#send", "e => getComputedStyle(e).opacity")
    assert float(opacity) < 1
    assert (await page.text_content("#presence") or "").strip() == ""
    await screenshot(page, "customer-closed-phone")
    assert failed == [], failed
    no_trouble(tab)
    await context.close()


@browser_test
async def test_the_phone_header_keeps_log_out_on_one_line(browser, daphne):
    server = agent_server(daphne, reply=SHORT_REPLY)
    await database_sync_to_async(make_user)("a-customer-with-a-rather-long-login-name")
    context = await new_context(browser, server, **PHONE)
    tab = await open_page(context)
    failed = failed_responses(tab.page)
    page = tab.page
    await page.goto("/accounts/login/")
    await page.fill("input[name=username]", "a-customer-with-a-rather-long-login-name")
    await page.fill("input[name=password]", "pw-a-customer-with-a-rather-long-login-name")
    await page.click("button[type=submit]")
    await page.goto("/")
    button = page.get_by_role("button", name="Log out")
    lines = await button.evaluate(
        "e => { const r = document.createRange(); r.selectNodeContents(e);"
        " return new Set([...r.getClientRects()].map((rect) => rect.top)).size; }"
    )
    assert lines == 1
    box = await button.bounding_box()
    assert box is not None and box["x"] + box["width"] <= PHONE["viewport"]["width"]
    assert failed == [], failed
    await context.close()
