"""The handoff console in a real browser, against a real Daphne process.

Chromium (Debian's, never a downloaded one) is driven through Playwright. The customer uses
the demo's chat page; the operator logs in through the login page and works in the console.
The tests prove the whole story (the AI streams, an operator takes over mid-answer, the
customer sees the operator's reply, the operator hands back, the AI answers again), the
live queue and its alerts, the claim race as two operators see it (with private notes and
their typing, live), a transfer to a colleague who then closes, that a reply refused as
"taken by ..." is shown and never resent, and that markup in messages, names, briefs and
notes shows as text and runs nothing. Every action the pages send goes to the REST API.
Screenshots go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from playwright.async_api import Browser, BrowserContext, Page

from durable_sessions import service
from durable_sessions.models import Control, DurableSession, Message, MessageState
from handoff_console.notes import add_note
from tests.factories import make_user
from tests.live import ROOT, DaphneServer, server_env

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(150),
]

db = database_sync_to_async

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
# About ten seconds at 25 words/s: long enough to take over in the middle of it.
LONG_REPLY = " ".join(f"word{i}" for i in range(240))
IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(1)</script>"
WAIT_MS = 30_000
DESKTOP = {"viewport": {"width": 1400, "height": 950}}

# Counts the console's alerts without changing them: every Notification made and every
# oscillator started (the beep) is recorded on window.
ALERT_SPY = """
(() => {
  window.__alerts = { notifications: [], tones: 0 };
  const Real = window.Notification;
  if (Real) {
    class Spy extends Real {
      constructor(title, options) {
        super(title, options);
        window.__alerts.notifications.push(title);
      }
    }
    window.Notification = Spy;
  }
  const Context = window.AudioContext;
  if (Context) {
    const create = Context.prototype.createOscillator;
    Context.prototype.createOscillator = function () {
      window.__alerts.tones += 1;
      return create.call(this);
    };
  }
})();
"""


# --- helpers --------------------------------------------------------------------------------


def agent_server(daphne: Callable[..., DaphneServer]) -> DaphneServer:
    """A Daphne process whose embedded runner answers with a slow demo agent."""
    agent = {"thinking_seconds": 0.2, "tokens_per_second": 25, "seed": 3, "reply": LONG_REPLY}
    return daphne(server_env(ds_settings={"RUNNER": "embedded", "AGENT_OPTIONS": agent}))


class Watched:
    """A page, with the dialogs it opened, the errors it raised, its websockets and the
    paths it POSTed to."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.sockets: list[str] = []
        self.posts: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("websocket", lambda ws: self.sockets.append(ws.url))
        page.on(
            "request",
            lambda request: (
                self.posts.append(urlsplit(request.url).path) if request.method == "POST" else None
            ),
        )

    def api_posts(self, session_id: str) -> list[str]:
        """The actions this page sent for the session, as the tails of their API paths.

        Asserts that nothing else was POSTed but the login form: the console's pages act
        only through the REST API (and the console's notes and read-mark endpoints).
        """
        api = f"/ds/sessions/{session_id}/"
        notes = f"/console/api/sessions/{session_id}/notes/"
        # How far the operator has read: bookkeeping for the queue's unread counts.
        read = re.compile(r"/console/api/sessions/[0-9a-f-]{36}/read/")
        sent = []
        for path in self.posts:
            if read.fullmatch(path):
                continue
            if path == notes:
                sent.append("notes")
            elif path.startswith(api):
                sent.append(path.removeprefix(api))
            else:
                assert path == "/accounts/login/", path
        return sent

    def session_sockets(self) -> int:
        """How many websockets the page opened to a session (reconnects included)."""
        return sum("/ws/sessions/" in url for url in self.sockets)

    async def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()


async def open_page(browser: Browser, server: DaphneServer, **options: Any) -> Watched:
    context: BrowserContext = await browser.new_context(base_url=server.http, **options)
    return Watched(await context.new_page())


async def operator(name: str) -> Any:
    user = await db(make_user)(name, operator=True)
    user.first_name = name.title()
    await db(user.save)()
    return user


async def log_in(watched: Watched, username: str) -> None:
    """Open the console: it sends us to the login page and back."""
    page = watched.page
    await page.goto("/console/")
    await page.wait_for_url(re.compile(r"/accounts/login/\?next="))
    await page.fill("#id_username", username)
    await page.fill("#id_password", f"pw-{username}")
    await page.locator("main form button[type=submit]").click()
    await page.wait_for_url(re.compile(r"/console/$"))
    await page.wait_for_selector("#feed-status[data-state=live]", timeout=WAIT_MS)


async def start_chat(watched: Watched) -> str:
    """The customer starts a conversation from the home page; returns the session id."""
    page = watched.page
    await page.goto("/")
    await page.get_by_role("button", name="Start a conversation").click()
    await page.wait_for_selector("#chat[data-status=live]", timeout=WAIT_MS)
    match = re.search(r"/chat/([0-9a-f-]{36})/", page.url)
    assert match, page.url
    return match.group(1)


async def customer_says(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.click("#send")


async def open_session(watched: Watched, session_id: str) -> None:
    await watched.page.goto(f"/console/sessions/{session_id}/")
    await watched.page.wait_for_selector("#connection:text('Live')", timeout=WAIT_MS)


async def wait_for_text_length(page: Page, selector: str, chars: int) -> int:
    """Wait until the last element matching ``selector`` holds ``chars`` characters or more."""
    handle = await page.wait_for_function(
        """([selector, n]) => {
          const found = document.querySelectorAll(selector);
          const last = found[found.length - 1];
          return last && last.textContent.length >= n && last.textContent.length;
        }""",
        arg=[selector, chars],
        timeout=WAIT_MS,
    )
    return int(await handle.json_value())


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def no_trouble(*pages: Watched) -> None:
    for watched in pages:
        assert watched.errors == [], watched.errors
        assert watched.dialogs == [], watched.dialogs


CONSOLE_REPLY = "#transcript li.role-assistant .body"
CUSTOMER_REPLY = "#log li[data-role=assistant] .text"


# --- the whole story ------------------------------------------------------------------------


async def test_an_operator_takes_over_mid_stream_replies_and_hands_back(browser, daphne):
    server = agent_server(daphne)
    await operator("olga")
    customer = await open_page(browser, server)
    session_id = await start_chat(customer)
    console = await open_page(browser, server, **DESKTOP)
    await log_in(console, "olga")
    ai_row = f"#section-ai li[data-id='{session_id}']"
    await console.page.wait_for_selector(ai_row, timeout=WAIT_MS)

    # The AI streams: the customer and the console both see the reply grow token by token.
    await customer_says(customer.page, "Where is my parcel?")
    await wait_for_text_length(customer.page, CUSTOMER_REPLY, 30)
    await console.page.click(f"{ai_row} a")
    await console.page.wait_for_url(f"**/console/sessions/{session_id}/")
    await console.page.wait_for_selector("#connection:text('Live')", timeout=WAIT_MS)
    seen = await wait_for_text_length(console.page, CONSOLE_REPLY, 40)
    assert await wait_for_text_length(console.page, CONSOLE_REPLY, seen + 20) > seen
    await console.page.wait_for_selector("#presence-agent[data-status=streaming]")
    assert await console.page.text_content("#presence-customer") == "online"

    # Take over mid-stream: the reply stops at once, for everyone, and the AI stays silent.
    await console.page.click("#take-over")
    await console.page.wait_for_selector("#control-badge:text('You are answering')")
    await console.page.wait_for_selector("#transcript li.role-assistant.state-cancelled")
    await customer.page.wait_for_selector(
        "#log li[data-role=assistant][data-state=cancelled]", timeout=WAIT_MS
    )
    stopped = await customer.page.locator(CUSTOMER_REPLY).last.text_content()
    assert 0 < len(stopped) < len(LONG_REPLY)
    await asyncio.sleep(1.5)
    assert await customer.page.locator(CUSTOMER_REPLY).last.text_content() == stopped
    assert await console.page.locator(CONSOLE_REPLY).last.text_content() == stopped
    reply = await Message.objects.filter(session_id=session_id, role="assistant").alatest("seq")
    assert (reply.content, reply.state) == (stopped, MessageState.CANCELLED)
    await customer.page.wait_for_selector("#banner[data-kind=human]", timeout=WAIT_MS)

    # The operator answers (the customer sees them typing first), under their own name.
    await console.page.fill("#reply", "Hi, Olga from support here. Let me look.")
    await customer.page.wait_for_selector("#presence:text('Olga is typing')", timeout=WAIT_MS)
    await console.page.click("#send")
    operator_row = customer.page.locator("#log li[data-role=operator]").last
    await operator_row.locator(".text").wait_for(timeout=WAIT_MS)
    await customer.page.wait_for_function(
        "() => [...document.querySelectorAll('#log li[data-role=operator] .text')]"
        ".some(e => e.textContent === 'Hi, Olga from support here. Let me look.')",
        timeout=WAIT_MS,
    )
    assert await operator_row.locator(".author").text_content() == "Olga"
    await screenshot(console.page, "console-session-taken-over")
    await screenshot(customer.page, "customer-talking-to-an-operator")

    # Hand back: the AI answers the customer's next message again.
    await console.page.click("#hand-back")
    await console.page.wait_for_selector("#control-badge:text('AI answering')")
    await customer.page.wait_for_function(
        "() => [...document.querySelectorAll('#log li[data-role=system] .text')]"
        ".some(e => e.textContent === 'You are back with our assistant.')",
        timeout=WAIT_MS,
    )
    await customer_says(customer.page, "And when will it arrive?")
    await customer.page.wait_for_selector(
        "#log li[data-role=assistant][data-state=streaming]", timeout=WAIT_MS
    )
    await wait_for_text_length(customer.page, CUSTOMER_REPLY, 30)
    assert await console.page.locator("#transcript li.role-assistant").count() == 2
    await wait_for_text_length(console.page, CONSOLE_REPLY, 30)
    session = await DurableSession.objects.aget(pk=session_id)
    assert (session.control, session.assigned_operator_id) == (Control.AI, None)
    await screenshot(console.page, "console-session-handed-back")
    assert console.api_posts(session_id) == ["take-over/", "messages/", "hand-back/"]
    no_trouble(customer, console)


# --- the live queue -------------------------------------------------------------------------


async def test_the_queue_shows_a_waiting_customer_live_with_title_counts_and_alerts(
    browser, daphne
):
    server = agent_server(daphne)
    await operator("olga")
    console = await open_page(browser, server, **DESKTOP)
    await console.page.context.grant_permissions(["notifications"], origin=server.http)
    await console.page.context.add_init_script(ALERT_SPY)
    await log_in(console, "olga")
    await console.page.click("#enable-alerts")
    await console.page.wait_for_selector("#enable-alerts:text('Alerts on')")
    assert not (await console.page.title()).startswith("(")

    customer = await open_page(browser, server)
    session_id = await start_chat(customer)
    await customer.page.click("#human")
    await customer.page.wait_for_selector("#banner[data-kind=queued]", timeout=WAIT_MS)

    # Without a reload: the row, its reason, a ticking timer, the count in the title.
    row = f"#section-waiting li[data-id='{session_id}']"
    await console.page.wait_for_selector(row, timeout=WAIT_MS)
    assert await console.page.text_content(f"{row} .reason") == "The customer asked for a person"
    await console.page.wait_for_function("() => document.title.startsWith('(1 waiting)')")
    first = await console.page.text_content(f"{row} .timer")
    await console.page.wait_for_function(
        "([sel, before]) => document.querySelector(sel).textContent !== before",
        arg=[f"{row} .timer", first],
        timeout=5000,
    )
    assert re.fullmatch(r"\d+:\d\d", await console.page.text_content(f"{row} .timer"))
    alerts = await console.page.evaluate("window.__alerts")
    # Anonymous visitors are told apart by a tag derived from their browser's id.
    assert len(alerts["notifications"]) == 1
    assert re.fullmatch(r"Visitor [0-9a-f]{4} needs a human", alerts["notifications"][0])
    assert alerts["tones"] >= 1
    assert "needs a human" in (await console.page.text_content("#announcer"))
    await screenshot(console.page, "console-queue-waiting")

    # Taken: the row moves to "Mine" and the count leaves the title.
    await console.page.click(f"{row} a")
    await console.page.wait_for_selector("#connection:text('Live')", timeout=WAIT_MS)
    brief = await console.page.text_content("#brief-reason")
    assert brief.startswith("The customer asked for a person")
    await console.page.click("#take-over")
    await console.page.wait_for_selector("#control-badge:text('You are answering')")
    await console.page.wait_for_function("() => document.title.startsWith('(1 mine)')")
    await console.page.click("text=← Queue")
    await console.page.wait_for_selector(f"#section-mine li[data-id='{session_id}']")
    assert await console.page.locator("#section-waiting li").count() == 0
    no_trouble(console, customer)


async def test_two_operators_claim_at_once_and_the_loser_sees_who_took_it(browser, daphne):
    server = agent_server(daphne)
    await operator("olga")
    await operator("omar")
    customer = await open_page(browser, server)
    session_id = await start_chat(customer)
    await customer.page.click("#human")
    consoles = [await open_page(browser, server, **DESKTOP) for _ in range(2)]
    for watched, name in zip(consoles, ("olga", "omar"), strict=True):
        await log_in(watched, name)
        await open_session(watched, session_id)
        await watched.page.wait_for_selector("#control-badge:text('Waiting for a human')")
    await asyncio.gather(*(w.page.click("#take-over") for w in consoles))
    # Both pages show the outcome of their own claim; only then ask who won.
    await asyncio.gather(
        *(w.page.wait_for_selector("#control-badge:not(.queued)") for w in consoles)
    )
    session = await DurableSession.objects.select_related("assigned_operator").aget(pk=session_id)
    winner_name = session.assigned_operator.get_full_name()
    loser = consoles[1] if winner_name == "Olga" else consoles[0]
    winner = consoles[0] if loser is consoles[1] else consoles[1]
    await winner.page.wait_for_selector("#control-badge:text('You are answering')")
    await loser.page.wait_for_selector(f"#action-error:text('taken by {winner_name}')")
    await loser.page.wait_for_selector(f"#control-badge:text('{winner_name} is answering')")
    assert await loser.page.is_disabled("#reply")
    operators = loser.page.locator("#presence-operators")
    customer_presence = customer.page.locator("#presence")
    # A reply being written shows to everyone...
    await winner.page.fill("#reply", "Let me see")
    await operators.filter(has_text=f"{winner_name} — typing a reply").wait_for(timeout=WAIT_MS)
    await customer_presence.filter(has_text=f"{winner_name} is typing").wait_for(timeout=WAIT_MS)
    # ...a private note being written (the client's private typing) to the operators only.
    await winner.page.fill("#note", "checking the order system")
    await operators.filter(has_text=f"{winner_name} — writing a note").wait_for(timeout=WAIT_MS)
    assert "typing a reply" not in (await operators.text_content() or "")
    await customer_presence.filter(has_text=f"{winner_name} is here").wait_for(timeout=WAIT_MS)
    assert "typing" not in (await customer_presence.text_content() or "")
    await screenshot(loser.page, "console-claim-lost")
    # The saved note reaches the other operator live: a `note.created` frame on the
    # connection already open (the notes are re-read only after a reconnect).
    await winner.page.click("#add-note")
    await loser.page.wait_for_selector(
        "#notes li .text:text-is('checking the order system')", timeout=WAIT_MS
    )
    await loser.page.wait_for_function(
        "() => !document.querySelector('#presence-operators').textContent.includes('note')",
        timeout=WAIT_MS,
    )
    assert loser.session_sockets() == 1
    assert winner.api_posts(session_id) == ["take-over/", "notes"]
    assert loser.api_posts(session_id) == ["take-over/"]
    assert "checking the order system" not in (await customer.page.text_content("#log") or "")
    no_trouble(customer, *consoles)


async def test_a_reply_refused_as_taken_is_shown_and_never_resent(browser, daphne):
    server = agent_server(daphne)
    olga = await operator("olga")
    await operator("omar")
    customer = await open_page(browser, server)
    session_id = await start_chat(customer)
    await customer.page.click("#human")
    await customer.page.wait_for_selector("#banner[data-kind=queued]", timeout=WAIT_MS)
    console = await open_page(browser, server, **DESKTOP)
    await log_in(console, "omar")
    await open_session(console, session_id)
    page = console.page
    await page.wait_for_selector("#control-badge:text('Waiting for a human')")

    # Omar answers while offline; meanwhile Olga takes the session.
    await page.context.set_offline(True)
    await page.wait_for_selector("#connection:text('Reconnecting')", timeout=WAIT_MS)
    await page.fill("#reply", "Omar here, let me check.")
    await page.click("#send")
    await page.wait_for_selector("#reply-hint:text('Sending 1 message')")
    await db(service.take_over)(session_id, olga)

    # Back online, the reply goes out and is refused: the page says who has the session.
    await page.context.set_offline(False)
    await page.wait_for_selector("#action-error:text-is('taken by Olga')", timeout=WAIT_MS)
    await page.wait_for_selector("#control-badge:text('Olga is answering')")
    # :text, not :text-is: the name is a <bdi> of its own, which :text-is does not look into.
    await page.wait_for_selector("#reply-hint:text('Taken by Olga.')")
    await screenshot(page, "console-reply-refused")

    # Olga hands back. The refused reply left the outbox: no resend (the client resends an
    # unconfirmed message after 5 s) takes the session over behind everyone's back.
    await db(service.hand_back)(session_id, olga)
    await page.wait_for_selector("#control-badge:text('AI answering')", timeout=WAIT_MS)
    await asyncio.sleep(7)
    assert await Message.objects.filter(session_id=session_id, role="operator").acount() == 0
    session = await DurableSession.objects.aget(pk=session_id)
    assert (session.control, session.assigned_operator_id) == (Control.AI, None)
    assert await page.text_content("#action-error") == "taken by Olga"
    assert await page.locator("#transcript li.role-operator").count() == 0
    assert await customer.page.locator("#log li[data-role=operator]").count() == 0
    no_trouble(customer, console)


async def test_an_operator_transfers_to_a_colleague_who_closes(browser, daphne):
    server = agent_server(daphne)
    await operator("olga")
    omar = await operator("omar")
    customer = await open_page(browser, server)
    session_id = await start_chat(customer)
    await customer.page.click("#human")
    await customer.page.wait_for_selector("#banner[data-kind=queued]", timeout=WAIT_MS)
    olga_page, omar_page = [await open_page(browser, server, **DESKTOP) for _ in range(2)]
    for watched, name in ((olga_page, "olga"), (omar_page, "omar")):
        await log_in(watched, name)
        await open_session(watched, session_id)
    await olga_page.page.click("#take-over")
    await olga_page.page.wait_for_selector("#control-badge:text('You are answering')")
    await omar_page.page.wait_for_selector("#control-badge:text('Olga is answering')")

    # A transfer without a colleague chosen is explained, not sent.
    await olga_page.page.click("#transfer")
    await olga_page.page.wait_for_selector(
        "#action-error:text-is('Choose a colleague or a team to transfer to.')"
    )
    await olga_page.page.select_option("#transfer-to", str(omar.pk))
    await olga_page.page.fill("#transfer-note", "billing question, over to you")
    await olga_page.page.click("#transfer")
    await olga_page.page.wait_for_selector("#control-badge:text('Omar is answering')")
    assert await olga_page.page.text_content("#action-error") == ""
    await omar_page.page.wait_for_selector(
        "#control-badge:text('You are answering')", timeout=WAIT_MS
    )
    # The note is "why a human" for the colleague, with who wrote it.
    await omar_page.page.wait_for_function(
        "() => document.querySelector('#brief-reason').textContent"
        " === 'billing question, over to you — by Olga'",
        timeout=WAIT_MS,
    )
    await customer.page.wait_for_function(
        "() => [...document.querySelectorAll('#log li[data-role=system] .text')]"
        ".some(e => e.textContent === 'Omar has taken over the conversation.')",
        timeout=WAIT_MS,
    )
    # Olga no longer holds it: she may not close it.
    assert await olga_page.page.is_disabled("#close")

    await omar_page.page.click("#close")
    for watched in (omar_page, olga_page):
        await watched.page.wait_for_selector("#control-badge:text('Closed')", timeout=WAIT_MS)
        await watched.page.wait_for_selector("#reply-hint:text-is('The conversation is closed.')")
    session = await DurableSession.objects.aget(pk=session_id)
    assert (session.status, session.assigned_operator_id) == ("closed", omar.pk)
    assert olga_page.api_posts(session_id) == ["take-over/", "transfer/"]
    assert omar_page.api_posts(session_id) == ["close/"]
    no_trouble(customer, olga_page, omar_page)


# --- untrusted text -------------------------------------------------------------------------


def _session_full_of_markup() -> tuple[str, int]:
    """A queued session whose customer name, messages, brief and note carry markup."""
    markup_user = get_user_model().objects.create_user(
        "mallory", password="pw-mallory", first_name=IMG
    )
    session = service.create_session(owner=markup_user, title=f"Order {SCRIPT}")
    customer = service.participant_for(session.id, "customer")
    service.post_message(session.id, author=customer, content=f"hi {IMG} {SCRIPT}")
    reply = service.start_assistant_message(session.id)
    service.append_delta(reply, f"agent says {IMG}")
    service.finish_assistant_message(reply)
    service.request_handoff(session.id, by=customer, reason=f"why {IMG}", summary=SCRIPT)
    olga = get_user_model().objects.get(username="olga")
    add_note(session.id, author=olga, text=f"note {IMG}")
    return str(session.id), markup_user.pk


INJECTED = """() => document.querySelectorAll(
  'main img, main script:not([type="application/json"]), main iframe'
).length"""


async def test_markup_shows_as_text_in_the_console_and_runs_nothing(browser, daphne):
    server = agent_server(daphne)
    await operator("olga")
    session_id, _ = await db(_session_full_of_markup)()
    console = await open_page(browser, server, **DESKTOP)
    await log_in(console, "olga")
    page = console.page

    row = f"#section-waiting li[data-id='{session_id}']"
    await page.wait_for_selector(row)
    assert await page.text_content(f"{row} .row-title") == f"Order {SCRIPT}"
    assert await page.text_content(f"{row} .row-customer") == IMG
    assert await page.text_content(f"{row} .reason") == f"why {IMG}"
    assert await page.evaluate(INJECTED) == 0

    await open_session(console, session_id)
    await page.wait_for_selector("#transcript li.role-assistant")
    bodies = await page.locator("#transcript li .body").all_text_contents()
    assert f"hi {IMG} {SCRIPT}" in bodies and f"agent says {IMG}" in bodies
    assert await page.text_content("#brief-reason") == f"why {IMG} — asked by {IMG}"
    assert await page.text_content("#brief-summary") == SCRIPT
    assert await page.text_content("#brief-ai-last") == f"agent says {IMG}"
    assert await page.locator("#notes li .text").all_text_contents() == [f"note {IMG}"]
    # Live text takes the same path: a note and a reply written now.
    await page.fill("#note", f"live note {SCRIPT}")
    await page.click("#add-note")
    await page.wait_for_selector(f"#notes li .text:text-is('live note {SCRIPT}')")
    await page.click("#take-over")
    await page.wait_for_selector("#control-badge:text('You are answering')")
    await page.fill("#reply", f"operator {IMG}")
    await page.click("#send")
    await page.wait_for_selector(f"#transcript li.role-operator .body p:text-is('operator {IMG}')")
    await asyncio.sleep(0.5)  # time for an injected handler to fire, were there one
    assert await page.evaluate(INJECTED) == 0
    await screenshot(page, "console-markup-as-text")
    no_trouble(console)
