"""The customer chat page and client.js in a real browser, against real Daphne processes.

Chromium (Debian's, never a downloaded one) is driven through Playwright. Each browser test
starts its own server with the embedded agent runner and a deterministic demo agent, then
proves one promise of the page: a reload or a network drop loses nothing and doubles
nothing, a message written offline is stored once, a second device continues mid-stream,
markup stays text, and the human/agent states show. Screenshots go to
``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import websockets
from channels.db import database_sync_to_async
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from playwright.async_api import Browser, BrowserContext, Page, WebSocket

from durable_sessions import service
from durable_sessions.models import DurableSession, Message
from tests.factories import make_user
from tests.live import ROOT, DaphneServer, server_env

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
# Long enough (about six seconds at 40 words/s) to act in the middle of it; the emoji and
# accents make the client's length check count code points, as the server does.
LONG_REPLY = " ".join(f"w{i}" + ("é😀" if i % 25 == 0 else "") for i in range(240))
SHORT_REPLY = "Thanks, noted. Anything else?"
IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(1)</script>"
WAIT_MS = 30_000

ASSISTANT = "#log li[data-role=assistant]"


def browser_test(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Marks of a test that drives Chromium against a live server on the test database."""
    marks = (
        pytest.mark.browser,
        pytest.mark.e2e,
        pytest.mark.django_db(transaction=True),
        pytest.mark.timeout(120),
    )
    for mark in marks:
        fn = mark(fn)
    return fn


def agent_server(daphne: Callable[..., DaphneServer], **options: Any) -> DaphneServer:
    """A Daphne process whose embedded runner answers with the demo agent."""
    agent = {"thinking_seconds": 0.2, "tokens_per_second": 40, "seed": 7, "reply": LONG_REPLY}
    extra = options.pop("ds_settings", {})
    return daphne(
        server_env(
            ds_settings={"RUNNER": "embedded", "AGENT_OPTIONS": {**agent, **options}, **extra}
        )
    )


class Watched:
    """A page with what it did that a test may assert on: dialogs, errors, websockets."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.sockets: list[WebSocket] = []
        self.frames: list[list[dict[str, Any]]] = []  # received, per socket
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("websocket", self._websocket)

    async def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    def _websocket(self, ws: WebSocket) -> None:
        frames: list[dict[str, Any]] = []
        self.sockets.append(ws)
        self.frames.append(frames)
        ws.on("framereceived", lambda payload: frames.append(json.loads(payload)))

    def after_seqs(self) -> list[int]:
        """The ``after_seq`` of every websocket the page opened, in order."""
        return [int(parse_qs(urlsplit(ws.url).query)["after_seq"][0]) for ws in self.sockets]


async def open_page(context: BrowserContext) -> Watched:
    return Watched(await context.new_page())


async def new_context(browser: Browser, server: DaphneServer, **options: Any) -> BrowserContext:
    return await browser.new_context(base_url=server.http, **options)


async def start_chat(watched: Watched) -> str:
    """Start a conversation from the home page; returns the session id."""
    page = watched.page
    await page.goto("/")
    await page.get_by_role("button", name="Start a conversation").click()
    await page.wait_for_selector("#chat[data-status=live]", timeout=WAIT_MS)
    match = re.search(r"/chat/([0-9a-f-]{36})/", page.url)
    assert match, page.url
    return match.group(1)


async def send(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.click("#send")


async def reply_text(page: Page) -> str:
    return await page.locator(f"{ASSISTANT} .text").last.text_content() or ""


async def wait_for_reply_chars(page: Page, chars: int) -> str:
    """Wait until the newest reply shows at least ``chars`` characters; return its text."""
    await page.wait_for_function(
        """n => {
          const replies = document.querySelectorAll('#log li[data-role=assistant] .text');
          return replies.length && replies[replies.length - 1].textContent.length >= n;
        }""",
        arg=chars,
        timeout=WAIT_MS,
    )
    return await reply_text(page)


async def wait_for_reply_state(page: Page, state: str) -> str:
    await page.wait_for_selector(f"{ASSISTANT}[data-state={state}]", timeout=WAIT_MS)
    return await reply_text(page)


async def texts(page: Page, selector: str) -> list[str]:
    return await page.locator(selector).all_text_contents()


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


# Database reads go through database_sync_to_async, which closes its connection: one left
# open would keep pytest-django from dropping a PostgreSQL test database.


@database_sync_to_async
def stored_reply(session_id: str) -> Message:
    return Message.objects.filter(session_id=session_id, role="assistant").latest("seq")


@database_sync_to_async
def count_messages(**filters: Any) -> int:
    return Message.objects.filter(**filters).count()


@database_sync_to_async
def control_of(session_id: str) -> str:
    return DurableSession.objects.get(pk=session_id).control


@database_sync_to_async
def operator_named(username: str, first_name: str) -> Any:
    user = make_user(username, operator=True)
    user.first_name = first_name
    user.save()
    return user


async def wait_until(check: Callable[[], Any]) -> None:
    """Poll an async ``check`` (a database read) until it is true, for at most WAIT_MS."""
    for _ in range(WAIT_MS // 100):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


def no_trouble(*pages: Watched) -> None:
    for watched in pages:
        assert watched.errors == [], watched.errors
        assert watched.dialogs == [], watched.dialogs


# --- browser tests ------------------------------------------------------------------------


@browser_test
async def test_a_reload_mid_stream_resumes_the_reply_without_doubled_text(browser, daphne):
    server = agent_server(daphne)
    context = await new_context(browser, server)
    tab = await open_page(context)
    session_id = await start_chat(tab)
    await send(tab.page, "Tell me everything")
    before = await wait_for_reply_chars(tab.page, 40)
    assert len(before) < len(LONG_REPLY)  # really in the middle of the stream
    await screenshot(tab.page, "reload-1-before")
    tab.sockets.clear()
    tab.frames.clear()

    await tab.page.reload()
    final = await wait_for_reply_state(tab.page, "complete")

    assert final == LONG_REPLY  # every word once: nothing lost, nothing doubled
    assert await texts(tab.page, f"{ASSISTANT} .text") == [LONG_REPLY]
    assert await texts(tab.page, "#log li[data-role=user] .text") == ["Tell me everything"]
    # The reloaded page resumed after the seq it had stored rather than replaying it all,
    # and the reply went on arriving live after that.
    after_seq = tab.after_seqs()[0]
    assert after_seq > 0
    frames = tab.frames[0]
    live_at = next(i for i, f in enumerate(frames) if f["type"] == "live")
    assert any(f["type"] == "message.delta" for f in frames[live_at:])
    assert all(f["seq"] > after_seq for f in frames if "at" in f)
    assert (await stored_reply(session_id)).content == LONG_REPLY
    await screenshot(tab.page, "reload-2-after")
    no_trouble(tab)
    await context.close()


@browser_test
async def test_a_network_drop_mid_stream_loses_nothing(browser, daphne):
    server = agent_server(daphne)
    context = await new_context(browser, server)
    tab = await open_page(context)
    session_id = await start_chat(tab)
    await send(tab.page, "Go on")
    await wait_for_reply_chars(tab.page, 40)

    await context.set_offline(True)
    # Chromium keeps an open socket "open" when offline and just stops delivering: the
    # client gives it up on the browser's offline event, as it must on a real drop.
    await tab.page.wait_for_selector("#chat[data-status=offline]", timeout=WAIT_MS)
    shown = await reply_text(tab.page)

    async def server_went_on() -> bool:
        reply = await stored_reply(session_id)
        return reply.state != "streaming" or len(reply.content) > len(shown) + 60

    await wait_until(server_went_on)  # there is something to catch up on
    assert await reply_text(tab.page) == shown  # and the page got none of it yet
    await screenshot(tab.page, "offline-1-dropped")

    await context.set_offline(False)
    final = await wait_for_reply_state(tab.page, "complete")
    assert final == LONG_REPLY
    assert await texts(tab.page, f"{ASSISTANT} .text") == [LONG_REPLY]
    assert tab.after_seqs()[-1] > 0  # the reconnect resumed after the last seq seen
    await tab.page.wait_for_selector("#chat[data-status=live]", timeout=WAIT_MS)
    await screenshot(tab.page, "offline-2-back")
    no_trouble(tab)
    await context.close()


@browser_test
async def test_a_message_sent_offline_is_delivered_exactly_once(browser, daphne):
    server = agent_server(daphne, reply=SHORT_REPLY)
    context = await new_context(browser, server)
    tab = await open_page(context)
    session_id = await start_chat(tab)
    # A second tab of the same browser shares the stored outbox: both resend it.
    other = await open_page(context)
    await other.page.goto(f"/chat/{session_id}/")
    await other.page.wait_for_selector("#chat[data-status=live]", timeout=WAIT_MS)

    await context.set_offline(True)
    for watched in (tab, other):
        await watched.page.wait_for_selector("#chat[data-status=offline]", timeout=WAIT_MS)
    await send(tab.page, "Written on the train")
    pending = tab.page.locator("#outbox li")
    await pending.wait_for(timeout=WAIT_MS)
    client_id = await pending.get_attribute("data-client-id")
    assert client_id
    assert "waiting for the connection" in (await pending.text_content() or "")
    stored = await tab.page.evaluate(
        "key => JSON.parse(localStorage.getItem(key))", f"durable-sessions:{session_id}:outbox"
    )
    assert [entry["client_id"] for entry in stored] == [client_id]
    assert await count_messages(client_id=client_id) == 0
    await screenshot(tab.page, "outbox-1-offline")

    await context.set_offline(False)
    mine = f"#log li[data-client-id='{client_id}']"
    for watched in (tab, other):
        await watched.page.wait_for_selector(mine, timeout=WAIT_MS)
        await watched.page.wait_for_selector("#outbox li", state="detached", timeout=WAIT_MS)
        await wait_for_reply_state(watched.page, "complete")
        assert await texts(watched.page, f"{mine} .text") == ["Written on the train"]
        assert await texts(watched.page, f"{ASSISTANT} .text") == [SHORT_REPLY]

    assert await count_messages(session_id=session_id, client_id=client_id) == 1
    assert await count_messages(session_id=session_id, role="user") == 1
    outbox = await tab.page.evaluate(
        "key => localStorage.getItem(key)", f"durable-sessions:{session_id}:outbox"
    )
    assert outbox is None
    await screenshot(tab.page, "outbox-2-delivered")
    no_trouble(tab, other)
    await context.close()


@browser_test
async def test_a_second_device_continues_mid_stream_through_the_link(browser, daphne):
    server = agent_server(daphne)
    laptop_context = await new_context(browser, server)
    laptop = await open_page(laptop_context)
    session_id = await start_chat(laptop)
    await send(laptop.page, "Explain it to me")
    await wait_for_reply_chars(laptop.page, 40)

    await laptop.page.click("#handover")
    await laptop.page.wait_for_selector("#handover-box:not([hidden])", timeout=WAIT_MS)
    link = await laptop.page.input_value("#handover-url")
    assert "/chat/continue/" in link

    phone_context = await new_context(browser, server, **PHONE)  # own cookies and storage
    phone = await open_page(phone_context)
    await phone.page.goto(link)
    await phone.page.click("#continue")
    await phone.page.wait_for_selector("#chat[data-status=live]", timeout=WAIT_MS)
    assert phone.page.url.endswith(f"/chat/{session_id}/")
    joined = await reply_text(phone.page)
    assert len(joined) < len(LONG_REPLY)  # the phone came in mid-stream
    await laptop.page.wait_for_function(
        "() => document.getElementById('presence').textContent.includes('2 of your devices')",
        timeout=WAIT_MS,
    )
    await screenshot(phone.page, "second-device-1-phone-mid-stream")

    for watched in (laptop, phone):
        assert await wait_for_reply_state(watched.page, "complete") == LONG_REPLY
        assert await texts(watched.page, "#log li[data-role=user] .text") == ["Explain it to me"]
    await screenshot(phone.page, "second-device-2-phone")
    await screenshot(laptop.page, "second-device-3-laptop")
    no_trouble(laptop, phone)
    await phone_context.close()
    await laptop_context.close()


@browser_test
async def test_markup_in_messages_and_names_shows_as_text_and_runs_nothing(browser, daphne):
    markup_reply = f"Did you mean {IMG} or {SCRIPT} or <b>bold</b>?"
    server = agent_server(daphne, reply=markup_reply)
    context = await new_context(browser, server)
    tab = await open_page(context)
    session_id = await start_chat(tab)

    await send(tab.page, IMG)
    assert await wait_for_reply_state(tab.page, "complete") == markup_reply
    await send(tab.page, SCRIPT)
    await tab.page.wait_for_function(
        "() => document.querySelectorAll('#log li[data-role=user]').length === 2",
        timeout=WAIT_MS,
    )

    operator = await operator_named("olga", f"Olga {IMG}")
    note = f"{SCRIPT} I am a person {IMG}"
    await service.aoperator_reply(session_id, operator=operator, content=note, client_id="op-1")
    await tab.page.wait_for_selector("#log li[data-role=operator]", timeout=WAIT_MS)

    assert await texts(tab.page, "#log li[data-role=user] .text") == [IMG, SCRIPT]
    assert (await texts(tab.page, f"{ASSISTANT} .text"))[0] == markup_reply
    assert await texts(tab.page, "#log li[data-role=operator] .text") == [note]
    assert await texts(tab.page, "#log li[data-role=operator] .author") == [f"Olga {IMG}"]
    assert f"Olga {IMG} from our team" in (await tab.page.text_content("#banner") or "")
    # No element was made from the text: no image, script or bold anywhere in the chat.
    for tag in ("img", "script", "b"):
        assert await tab.page.locator(f"#chat {tag}").count() == 0
    await tab.page.reload()  # the stored transcript is rendered as text too
    await tab.page.wait_for_selector("#chat[data-status=live]", timeout=WAIT_MS)
    assert await texts(tab.page, "#log li[data-role=operator] .text") == [note]
    assert await tab.page.locator("#chat img, #chat script").count() == 0
    await screenshot(tab.page, "markup-as-text")
    no_trouble(tab)  # no alert() ever ran
    await context.close()


@browser_test
async def test_thinking_then_stop_then_asking_for_a_human(browser, daphne):
    server = agent_server(daphne, thinking_seconds=1.5)
    context = await new_context(browser, server)
    tab = await open_page(context)
    session_id = await start_chat(tab)
    await send(tab.page, "Take your time")
    await tab.page.wait_for_selector("#agent-state[data-agent=thinking]", timeout=WAIT_MS)
    assert await tab.page.text_content("#agent-state") == "Assistant is thinking…"
    await screenshot(tab.page, "stop-1-thinking")

    await wait_for_reply_chars(tab.page, 40)
    await tab.page.click("#stop")
    partial = await wait_for_reply_state(tab.page, "cancelled")
    assert LONG_REPLY.startswith(partial) and len(partial) < len(LONG_REPLY)
    assert await tab.page.text_content(f"{ASSISTANT} .note") == "Stopped"
    await tab.page.wait_for_selector("#stop", state="hidden", timeout=WAIT_MS)
    reply = await stored_reply(session_id)
    assert (reply.state, reply.content) == ("cancelled", partial)
    await screenshot(tab.page, "stop-2-stopped")

    await tab.page.click("#human")
    await tab.page.wait_for_selector("#banner[data-kind=queued]", timeout=WAIT_MS)
    assert await control_of(session_id) == "queued"
    assert await tab.page.is_disabled("#human")
    await screenshot(tab.page, "stop-3-asked-for-a-human")
    no_trouble(tab)
    await context.close()


def logged_in_cookie(user: Any) -> str:
    """A Django session cookie of ``user``, valid for the server (same database and key)."""
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    return f"sessionid={store.session_key}"


async def frame_until(ws: Any, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first frame on a raw websocket that matches ``predicate``."""
    async with asyncio.timeout(WAIT_MS / 1000):
        while True:
            frame = json.loads(await ws.recv())
            if predicate(frame):
                return frame


@browser_test
async def test_an_operator_typing_then_taking_over_mid_stream_shows_on_the_page(browser, daphne):
    server = agent_server(daphne)
    context = await new_context(browser, server, **PHONE)
    tab = await open_page(context)
    session_id = await start_chat(tab)
    await send(tab.page, "Is anyone there?")
    await wait_for_reply_chars(tab.page, 40)

    olga = await operator_named("olga", "Olga")
    cookie = await database_sync_to_async(logged_in_cookie)(olga)
    async with websockets.connect(
        f"{server.ws}/ws/sessions/{session_id}/",
        origin=server.http,
        additional_headers={"Cookie": cookie},
    ) as console:
        await frame_until(console, lambda f: f["type"] == "live")
        presence = tab.page.locator("#presence")

        # Typing travels both ways, as state only: the customer's words never leave the page.
        await tab.page.type("#text", "hello?")
        await frame_until(console, lambda f: f["type"] == "presence" and f["customer"]["typing"])
        await console.send(json.dumps({"type": "typing", "state": "start"}))
        # An operator who only reads (and even types) is never shown to the customer: no
        # "joined" banner, no presence, until the takeover.
        await tab.page.wait_for_function(
            "() => window.durableChat.presence?.operators?.some((o) => o.typing)"
        )
        assert "Olga" not in (await presence.text_content() or "")
        assert await tab.page.is_hidden("#banner")

        take_over = {"type": "message.send", "content": "Hi, Olga here.", "client_id": "op-1"}
        await console.send(json.dumps(take_over))
        banner = tab.page.locator("#banner[data-kind=human]")
        await banner.wait_for(timeout=WAIT_MS)
        assert "Olga from our team has taken over" in (await banner.text_content() or "")
        await presence.filter(has_text="Olga is here").wait_for(timeout=WAIT_MS)
        assert await texts(tab.page, "#log li[data-role=operator] .author") == ["Olga"]
        assert await texts(tab.page, "#log li[data-role=operator] .text") == ["Hi, Olga here."]
        partial = await wait_for_reply_state(tab.page, "cancelled")
        note = await tab.page.text_content(f"{ASSISTANT} .note")
        assert note == "Stopped: a colleague took over"
        await tab.page.wait_for_selector("#stop", state="hidden", timeout=WAIT_MS)
        assert await tab.page.is_disabled("#human")
        await screenshot(tab.page, "takeover-banner-phone")
    assert (await stored_reply(session_id)).content == partial  # no AI text after the takeover
    no_trouble(tab)
    await context.close()


@browser_test
async def test_a_server_killed_mid_stream_shows_the_agent_not_responding(browser, daphne):
    # One attempt: the first lost worker fails the reply, as once retries are used up
    # (test_browser_retries shows a retried run continuing instead).
    server = agent_server(
        daphne,
        ds_settings={
            "LEASE_TIMEOUT": 2.0,
            "HEARTBEAT_INTERVAL": 0.5,
            "RUN_SWEEP_INTERVAL": 0.3,
            "RUN_MAX_ATTEMPTS": 1,
        },
    )
    context = await new_context(browser, server)
    tab = await open_page(context)
    session_id = await start_chat(tab)
    await send(tab.page, "Still there?")
    await wait_for_reply_chars(tab.page, 40)

    server.kill()  # kill -9: the agent dies with the process
    await tab.page.wait_for_selector("#chat[data-status=offline]", timeout=WAIT_MS)
    daphne(server.env, port=server.port)  # back on the same address; its runner reaps the run

    await tab.page.wait_for_selector("#agent-state[data-agent=unresponsive]", timeout=WAIT_MS)
    partial = await wait_for_reply_state(tab.page, "failed")
    await tab.page.wait_for_selector("#banner[data-kind=queued]", timeout=WAIT_MS)
    assert "not responding" in (await tab.page.text_content("#agent-state") or "")
    reply = await stored_reply(session_id)
    assert (reply.state, reply.content) == ("failed", partial)
    assert LONG_REPLY.startswith(partial)
    await screenshot(tab.page, "crash-not-responding")
    no_trouble(tab)
    await context.close()
