"""The chat widget ({% durable_chat %}) on a host page, in Chromium against a real Daphne.

A visitor opens the launcher, starts a conversation with the first message, reads the
agent's reply, and on the next page view finds the same conversation again (no second
session, nothing shown twice), opened at its latest message. Markup stays text. A closed
conversation disables the composer and offers a new one; on a phone the panel fills the
screen. Screenshots go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

from channels.db import database_sync_to_async

from durable_sessions import service
from durable_sessions.models import DurableSession
from tests.test_browser_chat import (
    IMG,
    PHONE,
    SCREENSHOTS,
    SHORT_REPLY,
    WAIT_MS,
    agent_server,
    browser_test,
    new_context,
    open_page,
)

PANEL = "#ds-chat-panel"
REPLY = ".ds-chat-log li[data-role=assistant][data-state=complete]"


async def open_widget(page) -> None:
    await page.goto("/shop/")
    # The launcher shows before the widget's module has wired it up.
    await page.wait_for_selector("[data-ds-chat][data-ready=true]", timeout=WAIT_MS)
    await page.get_by_role("button", name="Chat").click()
    await page.wait_for_selector(f"{PANEL}:not([hidden])", timeout=WAIT_MS)


@browser_test
async def test_the_widget_starts_resumes_and_closes_a_conversation(browser, daphne):
    server = agent_server(daphne, reply=SHORT_REPLY)
    context = await new_context(browser, server)
    tab = await open_page(context)
    page = tab.page

    await open_widget(page)
    assert tab.sockets == []  # nothing opened before the first message
    await page.fill("#ds-chat-text", f"hello {IMG}")
    await page.press("#ds-chat-text", "Enter")
    await page.wait_for_selector(REPLY, timeout=WAIT_MS)
    mine = page.locator(".ds-chat-log li[data-role=user] .ds-chat-body")
    assert await mine.text_content() == f"hello {IMG}"  # as text: no <img> was made
    assert await page.locator(".ds-chat-log img").count() == 0
    assert await page.text_content(f"{REPLY} .ds-chat-body") == SHORT_REPLY
    assert await page.locator(".ds-chat-log li[data-role=user] time").text_content()
    (session,) = [s async for s in DurableSession.objects.all()]

    # The next page view of the site resumes the same conversation, open, at the bottom.
    for n in range(12):
        await database_sync_to_async(service.post_system_message)(session.id, f"note {n}")
    await page.goto("/shop/")
    await page.wait_for_selector(f"{PANEL}:not([hidden])", timeout=WAIT_MS)
    await page.wait_for_selector(".ds-chat-log li:has-text('note 11')", timeout=WAIT_MS)
    assert await page.locator(REPLY).count() == 1
    assert await page.locator(".ds-chat-log li[data-role=user]").count() == 1
    at_bottom = await page.evaluate(
        "(() => { const s = document.querySelector('.ds-chat-scroll');"
        " return s.scrollHeight - s.scrollTop - s.clientHeight < 60; })()"
    )
    assert at_bottom
    assert await DurableSession.objects.acount() == 1
    await page.screenshot(path=SCREENSHOTS / "widget-desktop.png")

    # Closed: the composer is disabled (and looks it), a new conversation is offered.
    await database_sync_to_async(service.close_session)(session.id, reason="done")
    await page.wait_for_selector(".ds-chat[data-closed=true]", timeout=WAIT_MS)
    assert await page.is_disabled(".ds-chat-send")
    assert await page.is_disabled("#ds-chat-text")
    assert "closed" in (await page.text_content(".ds-chat-banner") or "")
    await page.get_by_role("button", name="Start a new conversation").click()
    await page.fill("#ds-chat-text", "again")
    await page.press("#ds-chat-text", "Enter")
    await page.wait_for_selector(REPLY, timeout=WAIT_MS)
    assert await DurableSession.objects.acount() == 2
    assert tab.errors == []
    await context.close()


@browser_test
async def test_on_a_phone_the_widget_fills_the_screen(browser, daphne):
    server = agent_server(daphne, reply=SHORT_REPLY)
    context = await new_context(browser, server, **PHONE)
    tab = await open_page(context)
    page = tab.page
    await open_widget(page)
    box = await page.locator(PANEL).bounding_box()
    assert box is not None
    assert (box["x"], box["y"]) == (0, 0)
    screen = PHONE["viewport"]
    assert (box["width"], box["height"]) == (screen["width"], screen["height"])
    send = await page.locator(".ds-chat-send").bounding_box()
    assert send is not None and send["y"] + send["height"] <= screen["height"]
    await page.screenshot(path=SCREENSHOTS / "widget-phone.png")
    await page.get_by_role("button", name="Close the chat").click()
    assert await page.is_visible(".ds-chat-launcher")
    assert tab.errors == []
    await context.close()
