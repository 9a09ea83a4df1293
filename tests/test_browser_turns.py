"""Typed turns on the customer page, in Chromium against a real Daphne process: the
reasoning is collapsed, tool calls show as cards, and an approval card shown on a laptop
is answered from a phone (a second browser holding a device link), after a reload."""

from __future__ import annotations

from typing import Any

from tests.test_browser_chat import (
    ASSISTANT,
    PHONE,
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

DEMO = {"reply": None, "thinking_seconds": 0.1, "tokens_per_second": 60}


async def wait_for_card(page: Any, state: str) -> None:
    await page.wait_for_selector(f"{ASSISTANT} .tool-card[data-state='{state}']", timeout=WAIT_MS)


@browser_test
async def test_a_tool_card_and_collapsed_reasoning(browser, daphne):
    server = agent_server(daphne, **DEMO)
    context = await new_context(browser, server)
    watched = await open_page(context)
    page = watched.page
    await start_chat(watched)
    await send(page, "Where is my order 1001?")
    await page.wait_for_selector(f"{ASSISTANT}[data-state=complete]", timeout=WAIT_MS)
    reasoning = page.locator(f"{ASSISTANT} details.reasoning").last
    assert await reasoning.get_attribute("open") is None  # collapsed
    assert "order 1001" in (await reasoning.locator(".reasoning-text").text_content())
    await wait_for_card(page, "done")
    card = page.locator(f"{ASSISTANT} .tool-card").last
    assert await card.locator(".tool-name").text_content() == "order_status"
    assert "shipped" in await card.locator(".tool-output").text_content()
    answer = await page.locator(f"{ASSISTANT} .part-text").last.text_content()
    assert "is shipped" in answer
    await screenshot(page, "turns-tool-card")
    no_trouble(watched)
    await context.close()


@browser_test
async def test_an_approval_card_survives_a_reload_and_a_phone_answers_it(browser, daphne):
    server = agent_server(daphne, **DEMO)
    laptop_context = await new_context(browser, server)
    laptop = await open_page(laptop_context)
    await start_chat(laptop)
    await send(laptop.page, "Please refund order 1001")
    await laptop.page.wait_for_selector(".approval .approve", timeout=WAIT_MS)
    await laptop.page.wait_for_selector("#agent-state[data-agent=awaiting_approval]")
    await laptop.page.reload()  # the pending approval is durable state
    await laptop.page.wait_for_selector(".approval .approve", timeout=WAIT_MS)
    # A phone opens the conversation from a device link and answers there.
    await laptop.page.click("#handover")
    await laptop.page.wait_for_selector("#handover-box:not([hidden])", timeout=WAIT_MS)
    link = await laptop.page.input_value("#handover-url")
    phone_context = await new_context(browser, server, **PHONE)
    phone = await open_page(phone_context)
    await phone.page.goto(link)
    await phone.page.get_by_role("button", name="Continue here").click()
    await phone.page.wait_for_selector(".approval .approve", timeout=WAIT_MS)
    button = phone.page.locator(".approval .approve")
    box = await button.bounding_box()
    assert box is not None and box["height"] >= 40  # a thumb can hit it
    await screenshot(phone.page, "turns-approval-phone")
    await button.click()
    for page in (phone.page, laptop.page):
        await wait_for_card(page, "done")
        await page.wait_for_selector(f"{ASSISTANT}[data-state=complete]", timeout=WAIT_MS)
        assert await page.locator(".approval").count() == 0
        assert "refunded" in await page.locator(f"{ASSISTANT} .part-text").last.text_content()
    assert await laptop.page.locator(f"{ASSISTANT}").count() == 1  # one reply, continued
    await screenshot(laptop.page, "turns-approved")
    no_trouble(laptop, phone)
    await laptop_context.close()
    await phone_context.close()


@browser_test
async def test_an_operator_approves_a_refund_over_the_limit_from_the_console(browser, daphne):
    from tests.test_browser_console import log_in, open_session, operator
    from tests.test_browser_console import open_page as open_console

    server = agent_server(daphne, **DEMO)
    customer_context = await new_context(browser, server)
    customer = await open_page(customer_context)
    session_id = await start_chat(customer)
    await send(customer.page, "Please refund order 1003")
    await wait_for_card(customer.page, "awaiting-approval")
    # Over the limit: the customer sees the request but may not answer it.
    assert await customer.page.locator(".approval .approve").count() == 0
    await operator("olga")
    console = await open_console(browser, server)
    await log_in(console, "olga")
    row = console.page.locator(f"li[data-id='{session_id}'][data-agent=awaiting_approval]")
    await row.wait_for(timeout=WAIT_MS)  # "awaiting approval" in the queue
    await open_session(console, session_id)
    # The context panel lists the conversation's tool calls; the approval is answered there.
    await console.page.wait_for_selector("#tools-waiting:text('1 waiting for approval')")
    await console.page.locator("#tool-calls .tool-card .approve").click()
    await console.page.wait_for_selector("#tool-calls .tool-card[data-state=done]", timeout=WAIT_MS)
    await console.page.wait_for_selector("#transcript .tool-card[data-state=done]")
    assert await console.page.text_content("#tools-waiting") == ""
    await wait_for_card(customer.page, "done")
    await customer.page.wait_for_selector(f"{ASSISTANT}[data-state=complete]", timeout=WAIT_MS)
    assert console.api_posts(session_id)[-1].startswith("approvals/")
    decided = customer.page.locator(f"{ASSISTANT} .tool-card").last
    assert "1499" in await decided.locator(".tool-output").text_content()
    await screenshot(console.page, "turns-console-approved")
    no_trouble(customer, console)
    await customer_context.close()
