"""Steering and interrupting on the customer page, in Chromium against a real Daphne process:
while an answer streams the page offers the choice, a steering message changes the rest of
that same answer, and an interrupt stops it (its text kept, marked) for a new one."""

from __future__ import annotations

from tests.test_browser_chat import (
    ASSISTANT,
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

PLAN = " ".join(f"Step {i} of the plan." for i in range(1, 81))
SLOW = {"reply": PLAN, "thinking_seconds": 0.1, "tokens_per_second": 40}


@browser_test
async def test_a_steering_message_changes_the_answer_being_written(browser, daphne):
    server = agent_server(daphne, **SLOW)
    context = await new_context(browser, server)
    watched = await open_page(context)
    page = watched.page
    await start_chat(watched)
    await send(page, "Tell me the plan")
    await page.wait_for_selector(f"{ASSISTANT}[data-state=streaming]", timeout=WAIT_MS)
    await page.wait_for_selector("#send-mode-box:not([hidden])", timeout=WAIT_MS)
    assert await page.input_value("#send-mode") == "steer"  # the page's default
    await send(page, "What about a refund?")
    steered = page.locator("#log li[data-role=user][data-mode=steer]")
    await steered.wait_for(timeout=WAIT_MS)
    await page.wait_for_selector(f"{ASSISTANT}[data-state=complete]", timeout=WAIT_MS)
    answer = await page.locator(f"{ASSISTANT} .text").last.text_content() or ""
    assert answer.startswith("Step 1 of the plan.")
    assert 'Change of plan, you said: "What about a refund?".' in answer
    assert "Step 80 of the plan." not in answer
    assert await page.locator(f"{ASSISTANT}").count() == 1  # the same answer went on
    assert await steered.locator(".mode").text_content() == "Taken into the answer"
    # Nothing streams any more: the choice goes away.
    await page.locator("#send-mode-box").wait_for(state="hidden", timeout=WAIT_MS)
    await screenshot(page, "steering-steered")
    no_trouble(watched)
    await context.close()


@browser_test
async def test_interrupt_stops_the_answer_and_a_new_one_follows(browser, daphne):
    server = agent_server(daphne, **SLOW)
    context = await new_context(browser, server)
    watched = await open_page(context)
    page = watched.page
    await start_chat(watched)
    await send(page, "Tell me the plan")
    await page.wait_for_selector(f"{ASSISTANT}[data-state=streaming]", timeout=WAIT_MS)
    await page.wait_for_selector("#send-mode-box:not([hidden])", timeout=WAIT_MS)
    await page.select_option("#send-mode", "interrupt")
    await send(page, "Never mind, start again")
    stopped = page.locator(f"{ASSISTANT}[data-state=cancelled]")
    await stopped.wait_for(timeout=WAIT_MS)
    assert await stopped.locator(".note").text_content() == "Stopped: you sent a new message"
    partial = await stopped.locator(".text").text_content() or ""
    assert partial.startswith("Step 1") and len(partial) < len(PLAN)
    user = page.locator("#log li[data-role=user][data-mode=interrupt]")
    assert await user.locator(".mode").text_content() == "Stopped the answer being written"
    await page.wait_for_selector(f"{ASSISTANT}[data-state=streaming]", timeout=WAIT_MS)
    assert await page.locator(ASSISTANT).count() == 2
    await screenshot(page, "steering-interrupted")
    no_trouble(watched)
    await context.close()
