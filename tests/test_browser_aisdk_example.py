"""The AI SDK example page (the vendored ``ai`` Chat with DurableChatTransport) in
Chromium against a real Daphne process: an answer streams, a second device follows it
live, the stop button really cancels, and an operator who takes over in the console is
seen answering. Screenshots go to ``test-artifacts/screenshots/``."""

from __future__ import annotations

import re

from channels.db import database_sync_to_async
from playwright.async_api import BrowserContext, Page

from durable_sessions.models import Event, Message, MessageState
from tests.factories import make_user
from tests.live import DaphneServer, server_env
from tests.test_browser_chat import Watched, browser_test, logged_in_cookie
from tests.test_browser_console import DESKTOP, log_in, open_session, operator, screenshot

db = database_sync_to_async
WAIT_MS = 30_000
ANSWER = "#log li[data-role=assistant] .text"
AGENT = {"thinking_seconds": 0.2, "tokens_per_second": 30, "seed": 7, "repeat": 2}


def agent_server(daphne) -> DaphneServer:
    return daphne(server_env(ds_settings={"RUNNER": "embedded", "AGENT_OPTIONS": AGENT}))


async def customer_context(browser, server: DaphneServer, cookie: str) -> BrowserContext:
    context = await browser.new_context(base_url=server.http)
    name, value = cookie.split("=", 1)
    await context.add_cookies([{"name": name, "value": value, "url": server.http}])
    return context


async def ready(page: Page) -> None:
    await page.wait_for_selector("#chat[data-status=ready][data-connection=live]", timeout=WAIT_MS)


async def answer_length_at_least(page: Page, chars: int, answers: int = 1) -> None:
    """Wait until the page shows ``answers`` answers, the last one ``chars`` long or more."""
    await page.wait_for_function(
        """([n, count]) => {
          const found = document.querySelectorAll('#log li[data-role=assistant] .text');
          return found.length === count && found[count - 1].textContent.length >= n;
        }""",
        arg=[chars, answers],
        timeout=WAIT_MS,
    )


async def last_answer(page: Page) -> str:
    return await page.locator(ANSWER).last.text_content() or ""


def stored_replies(session_id: str) -> list[Message]:
    return list(Message.objects.filter(session_id=session_id, role="assistant").order_by("seq"))


def cancel_reasons(session_id: str) -> list[str]:
    events = Event.objects.filter(session_id=session_id, type="message.cancelled")
    return [event.payload["reason"] for event in events]


@browser_test
async def test_the_ai_sdk_example_streams_to_two_devices_stops_and_shows_an_operator(
    browser, daphne
):
    server = agent_server(daphne)
    customer = await db(make_user)("carla")
    cookie = await db(logged_in_cookie)(customer)
    await operator("olga")

    # The customer starts a chat from the example's page.
    phone = Watched(await (await customer_context(browser, server, cookie)).new_page())
    await phone.page.goto("/examples/ai-sdk/")
    await phone.page.get_by_role("button", name="Start an AI SDK chat").click()
    await phone.page.wait_for_url(re.compile(r"/examples/ai-sdk/[0-9a-f-]{36}/$"))
    session_id = phone.page.url.rstrip("/").rsplit("/", 1)[1]
    await ready(phone.page)
    laptop = Watched(await (await customer_context(browser, server, cookie)).new_page())
    await laptop.page.goto(f"/examples/ai-sdk/{session_id}/")
    await ready(laptop.page)

    # An answer streams on the phone; the laptop sees the question and the answer live.
    await phone.page.fill("#text", "hello there")
    await phone.page.click("#send")
    await answer_length_at_least(phone.page, 20)
    await laptop.page.wait_for_selector("#log li[data-role=user] .text:text('hello there')")
    await answer_length_at_least(laptop.page, 40)
    await ready(phone.page)
    await ready(laptop.page)
    [reply] = await db(stored_replies)(session_id)
    assert reply.state == MessageState.COMPLETE
    assert await last_answer(phone.page) == reply.content
    await laptop.page.wait_for_function(
        "text => { const f = document.querySelectorAll('#log li[data-role=assistant] .text');"
        " return f[f.length - 1].textContent === text; }",
        arg=reply.content,
        timeout=WAIT_MS,
    )
    assert await laptop.page.locator("#log li[data-role=assistant]").count() == 1
    await screenshot(phone.page, "aisdk-example-answered")

    # Stop is a real cancel: the answer ends cancelled by the customer, its text kept.
    await phone.page.fill("#text", "tell me more")
    await phone.page.click("#send")
    await answer_length_at_least(phone.page, 30, answers=2)
    await phone.page.click("#stop")
    await ready(phone.page)
    stopped = await last_answer(phone.page)
    # The server's view: the cancel frame reaches it after the page stopped reading.
    for _ in range(300):
        replies = await db(stored_replies)(session_id)
        if replies[-1].state != MessageState.STREAMING:
            break
        await phone.page.wait_for_timeout(100)
    assert replies[-1].state == MessageState.CANCELLED
    assert await db(cancel_reasons)(session_id) == ["user"]
    assert stopped and replies[-1].content.startswith(stopped)
    await screenshot(phone.page, "aisdk-example-stopped")

    # An operator takes over in the console and answers: both devices show the reply.
    console = Watched(await (await browser.new_context(base_url=server.http, **DESKTOP)).new_page())
    await log_in(console, "olga")
    await open_session(console, session_id)
    await console.page.click("#take-over")
    await console.page.wait_for_selector("#control-badge:text('You are answering')")
    await console.page.fill("#reply", "Hi, Olga here. I can help.")
    await console.page.click("#send")
    for page in (phone.page, laptop.page):
        await page.wait_for_selector(
            "#log li[data-role=operator] .text:text('Hi, Olga here. I can help.')",
            timeout=WAIT_MS,
        )
        await page.wait_for_selector("#banner[data-kind=human]", timeout=WAIT_MS)
    assert await phone.page.locator("#log li[data-role=operator] .author").last.text_content() == (
        "Olga"
    )
    await screenshot(laptop.page, "aisdk-example-operator")
    assert phone.errors == [] and laptop.errors == [] and console.errors == []
