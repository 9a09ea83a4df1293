"""Edit and regenerate on the customer page, in Chromium against a real Daphne process:
every version is kept and reached with "< 1 / 2 >" buttons, and a switch on one tab shows on the
other (each follows the log)."""

from __future__ import annotations

from durable_sessions.agents.demo import REPLIES
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

QUICK = {"reply": None, "thinking_seconds": 0.1, "tokens_per_second": 0, "use_tools": False}
USER = "#log li[data-role=user]:not([hidden])"
SHOWN_ANSWER = f"{ASSISTANT}:not([hidden])"


async def wait_text(page, selector: str, text: str, *, whole: bool = True) -> None:
    """Wait until the first element matching ``selector`` shows ``text`` (or contains it)."""
    await page.wait_for_function(
        """([selector, text, whole]) => {
          const found = document.querySelector(selector)?.textContent ?? "";
          return whole ? found === text : found.includes(text);
        }""",
        arg=[selector, text, whole],
        timeout=WAIT_MS,
    )


async def shown_answer(page) -> str:
    await page.wait_for_selector(f"{SHOWN_ANSWER}[data-state=complete]", timeout=WAIT_MS)
    return await page.locator(f"{SHOWN_ANSWER} .text").last.text_content() or ""


@browser_test
async def test_edit_regenerate_and_versions_follow_on_another_tab(browser, daphne):
    server = agent_server(daphne, **QUICK)
    context = await new_context(browser, server)
    laptop = await open_page(context)
    page = laptop.page
    session_id = await start_chat(laptop)
    await send(page, "Where is my order?")
    assert await shown_answer(page) == REPLIES["order"]
    other = await open_page(context)  # a second tab: its own connection
    await other.page.goto(f"/chat/{session_id}/")
    await other.page.wait_for_selector("#chat[data-status=live]", timeout=WAIT_MS)

    # Edit the question: a new version, answered; the old one is one click away.
    await page.locator(f"{USER} .tools .edit").click()
    await page.fill(f"{USER} .edit-text", "How do I reset my password?")
    await page.locator(f"{USER} .tools .save").click()
    await page.wait_for_selector(f"{USER} .versions .count", timeout=WAIT_MS)
    assert await page.locator(f"{USER} .versions .count").text_content() == "2 / 2"
    assert await page.locator(f"{USER} .text").text_content() == "How do I reset my password?"
    await wait_text(page, f"{SHOWN_ANSWER} .text", "password", whole=False)
    assert await shown_answer(page) == REPLIES["password"]
    assert await page.locator(f"{USER}").count() == 1  # the old question is not shown
    await screenshot(page, "branches-edited")

    # Back to the first version on the laptop: the other tab follows.
    await page.locator(f"{USER} .versions .prev").click()
    for tab in (page, other.page):
        await wait_text(tab, f"{USER} .versions .count", "1 / 2")
        assert await tab.locator(f"{USER} .text").text_content() == "Where is my order?"
        assert await shown_answer(tab) == REPLIES["order"]

    # Regenerate the answer: a second version of it, the first kept.
    await other.page.locator(f"{SHOWN_ANSWER} .tools .regenerate").click()
    for tab in (page, other.page):
        await wait_text(tab, f"{SHOWN_ANSWER} .versions .count", "2 / 2")
        assert await shown_answer(tab) == REPLIES["order"]
    await screenshot(other.page, "branches-regenerated")
    no_trouble(laptop)
    no_trouble(other)
    await context.close()


@browser_test
async def test_the_console_marks_the_shown_version_and_keeps_the_others(browser, daphne):
    from channels.db import database_sync_to_async

    from durable_sessions import service
    from durable_sessions.models import Message
    from tests import test_browser_console as console_pages

    server = agent_server(daphne, **QUICK)
    context = await new_context(browser, server)
    customer = await open_page(context)
    session_id = await start_chat(customer)
    await send(customer.page, "Where is my order?")
    await shown_answer(customer.page)
    await console_pages.operator("olga")
    console = await console_pages.open_page(browser, server)
    await console_pages.log_in(console, "olga")
    await console_pages.open_session(console, session_id)
    question = await database_sync_to_async(Message.objects.get)(role="user")
    await database_sync_to_async(service.edit_message)(session_id, question.pk, "Reset password?")
    old = f"#transcript li[data-id='{question.pk}'] .state"
    await wait_text(console.page, old, "version 1 of 2 · not on the shown branch")
    assert await console.page.locator("#transcript li[data-active=false]").count() == 2
    new = "#transcript li.role-user[data-active=true] .state"
    await wait_text(console.page, new, "version 2 of 2 · shown")
    await screenshot(console.page, "branches-console")
    no_trouble(customer)
    await context.close()
    await console.page.context.close()
