"""The console as a support team uses it all day, in Chromium against a real Daphne process.

Each test starts from a problem an operator met: a reply to a waiting customer shown above
the notice it follows, author labels said twice, a brief with no summary when the customer
asked for a person, "why a human" stuck on the first reason, a reply hint that spoke of the
AI while the customer waited in the queue, a composer pushed below the fold, a long note
that stretched the page. Then the inbox: the conversation list beside the open one, and the
keyboard (j/k, t, r, n, h, ? and Esc). Screenshots go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from playwright.async_api import Page

from durable_sessions import service
from durable_sessions.models import Control, DurableSession
from handoff_console.models import CannedReply
from handoff_console.notes import add_note
from tests.factories import make_user
from tests.live import server_env
from tests.test_browser_console import (
    WAIT_MS,
    customer_says,
    log_in,
    no_trouble,
    open_page,
    open_session,
    screenshot,
    start_chat,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(150),
]

db = database_sync_to_async

LAPTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
SHORT_REPLY = "Sorry to hear that. Let me check."


def quick_server(daphne: Any) -> Any:
    agent = {"thinking_seconds": 0.1, "tokens_per_second": 60, "reply": SHORT_REPLY}
    return daphne(server_env(ds_settings={"RUNNER": "embedded", "AGENT_OPTIONS": agent}))


async def named_operator(username: str, first_name: str) -> Any:
    user = await db(make_user)(username, operator=True)
    user.first_name = first_name
    await db(user.save)()
    return user


async def transcript(page: Page) -> list[dict[str, Any]]:
    return await page.eval_on_selector_all(
        "#transcript li",
        """items => items.map(li => ({
          seq: Number(li.dataset.seq),
          role: li.className.match(/role-(\\w+)/)[1],
          who: li.querySelector('.who').innerText,
          body: li.querySelector('.body').textContent,
        }))""",
    )


async def in_view(page: Page, selector: str) -> bool:
    """Whether the whole element is inside the viewport, without scrolling anything."""
    return await page.eval_on_selector(
        selector,
        """e => { const r = e.getBoundingClientRect();
          return r.top >= 0 && r.left >= 0
            && r.bottom <= innerHeight && r.right <= innerWidth; }""",
    )


# --- a reply to a waiting customer ----------------------------------------------------------


async def test_a_reply_to_a_waiting_customer_keeps_the_log_order_and_the_brief_is_current(
    browser, daphne
):
    server = quick_server(daphne)
    await named_operator("operator", "Operator")
    customer = await open_page(browser, server)
    session_id = await start_chat(customer)
    await customer_says(customer.page, "My parcel 123 never came")
    await customer.page.wait_for_selector(
        "#log li[data-role=assistant][data-state=complete]", timeout=WAIT_MS
    )
    await customer.page.click("#human")
    await customer.page.wait_for_selector("#banner[data-kind=queued]", timeout=WAIT_MS)

    console = await open_page(browser, server, **LAPTOP)
    await log_in(console, "operator")
    await open_session(console, session_id)
    page = console.page
    await page.wait_for_selector("#control-badge:text('Waiting for a human')")
    # The list beside it shows the customer online (a dot, from the presence store).
    await page.wait_for_selector(
        f"#conversation-list li[data-id='{session_id}'] .dot.online", timeout=WAIT_MS
    )
    # The hint speaks of the queue, not of the AI.
    hint = await page.text_content("#reply-hint")
    assert "waiting for a human" in hint and "from the AI" not in hint
    # The customer pressed the button: no agent summary, so the brief quotes the customer.
    assert await page.text_content("#brief-summary-label") == "The customer wrote"
    assert "My parcel 123 never came" in await page.text_content("#brief-summary")
    assert (await page.text_content("#brief-reason")).startswith("The customer asked for a person")

    # Answer without pressing Take over: the server takes over, then posts the reply.
    await page.fill("#reply", "Hello, I am on it.")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#transcript li.role-operator", timeout=WAIT_MS)
    await page.wait_for_selector("#control-badge:text('You are answering')")
    items = await transcript(page)
    seqs = [item["seq"] for item in items]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    bodies = [item["body"] for item in items]
    assert bodies.index("Operator joined the conversation.") < bodies.index("Hello, I am on it.")
    # The label says the name once: "Operator", not "Operator Operator".
    operator_label = next(i["who"] for i in items if i["role"] == "operator")
    assert operator_label.split()[0] == "Operator" and operator_label.count("Operator") == 1
    customer_label = next(i["who"] for i in items if i["role"] == "user")
    assert customer_label.startswith("Visitor") and customer_label.count("Visitor") == 1
    # "Why a human" follows the latest change: the operator took it by replying.
    await page.wait_for_function(
        "() => document.querySelector('#brief-reason').textContent"
        " === 'operator replied — by Operator'",
        timeout=WAIT_MS,
    )
    assert "My parcel 123" in await page.text_content("#brief-summary")
    # A reload shows the same order.
    await page.reload()
    await page.wait_for_selector("#connection:text('Live')", timeout=WAIT_MS)
    await page.wait_for_selector("#transcript li.role-operator")
    assert [i["seq"] for i in await transcript(page)] == seqs
    await screenshot(page, "console-reply-to-waiting-customer")
    no_trouble(customer, console)


# --- room to work at 1280x800 and on a phone ------------------------------------------------


def _long_session(operator_username: str) -> str:
    """A queued session with a long transcript, a long agent summary and a 3,000-char note."""
    owner = make_user("customer-long")
    session = service.create_session(owner=owner, title="Refund for order 4411")
    customer = service.participant_for(session.id, "customer")
    for n in range(30):
        service.post_message(session.id, author=customer, content=f"message {n} " + "words " * 20)
    service.request_handoff(
        session.id, by=customer, reason="refund over the limit", summary="summary " * 400
    )
    author = DurableSession.objects.model._meta.apps.get_model("auth", "User")
    add_note(session.id, author=author.objects.get(username=operator_username), text="n" * 3000)
    return str(session.id)


@pytest.mark.parametrize("device", ["laptop", "phone"])
async def test_the_composer_stays_in_view_and_a_long_note_stays_inside_its_panel(
    browser, daphne, device
):
    server = quick_server(daphne)
    await named_operator("olga", "Olga")
    session_id = await db(_long_session)("olga")
    console = await open_page(browser, server, **(LAPTOP if device == "laptop" else PHONE))
    await log_in(console, "olga")
    await open_session(console, session_id)
    page = console.page
    await page.wait_for_selector("#transcript li.role-system")
    await page.wait_for_selector("#notes li")
    assert await in_view(page, "#reply")
    assert await in_view(page, "#send")
    # The notes panel is bounded: the 3,000-character note scrolls inside it.
    height = await page.eval_on_selector("#notes", "e => e.getBoundingClientRect().height")
    assert height <= 300
    assert await page.eval_on_selector("#notes", "e => e.scrollHeight > e.clientHeight")
    if device == "laptop":
        # Nothing stretches the page: each column scrolls on its own.
        assert await page.evaluate("document.documentElement.scrollHeight") <= 800
    await screenshot(page, f"console-session-{device}")
    no_trouble(console)


# --- the inbox and the keyboard -------------------------------------------------------------


def _three_waiting() -> list[str]:
    CannedReply.objects.create(
        shortcut="greet", text="Hello {customer_name}, {operator_name} here."
    )
    CannedReply.objects.create(shortcut="bye", text="Goodbye!")
    ids = []
    for n in range(3):
        session = service.create_session(visitor=f"visitor-{n}", title=f"Question {n}")
        customer = service.participant_for(session.id, "customer")
        service.post_message(session.id, author=customer, content=f"question number {n}")
        service.request_handoff(session.id, by=customer, reason=f"reason {n}")
        ids.append(str(session.id))
    return ids


async def test_the_inbox_list_and_the_keyboard_move_and_act(browser, daphne):
    server = quick_server(daphne)
    await named_operator("olga", "Olga")
    ids = await db(_three_waiting)()
    console = await open_page(browser, server, **LAPTOP)
    await log_in(console, "olga")
    page = console.page
    await open_session(console, ids[0])
    # The list beside the conversation: oldest wait first, the open one marked.
    listed = await page.eval_on_selector_all(
        "#conversation-list li", "items => items.map(li => li.dataset.id)"
    )
    assert listed == ids
    assert (
        await page.get_attribute(f"#conversation-list li[data-id='{ids[0]}'] a", "aria-current")
        == "page"
    )

    # ? opens the help, Esc closes it.
    await page.keyboard.press("?")
    await page.wait_for_selector("#shortcuts[open]")
    await screenshot(page, "console-shortcuts")
    await page.keyboard.press("Escape")
    await page.wait_for_selector("#shortcuts:not([open])", state="attached")

    # j and k move between conversations.
    await page.keyboard.press("j")
    await page.wait_for_url(f"**/console/sessions/{ids[1]}/")
    await page.wait_for_selector("#connection:text('Live')", timeout=WAIT_MS)
    await page.keyboard.press("k")
    await page.wait_for_url(f"**/console/sessions/{ids[0]}/")
    await page.wait_for_selector("#connection:text('Live')", timeout=WAIT_MS)

    # t takes over, r writes a reply, / picks a canned one, Enter sends it, Esc leaves the
    # box, n writes a note.
    await page.keyboard.press("t")
    await page.wait_for_selector("#control-badge:text('You are answering')")
    await page.keyboard.press("r")
    assert await page.evaluate("document.activeElement.id") == "reply"
    await page.keyboard.type("/g")
    await page.wait_for_selector("#canned-suggestions li[aria-selected=true]:has-text('/greet')")
    assert await page.locator("#canned-suggestions li").count() == 1
    await page.keyboard.press("Enter")  # picks the reply: nothing is sent yet
    customer = await page.text_content(f"#conversation-list li[data-id='{ids[0]}'] .row-customer")
    greeting = f"Hello {customer}, Olga here."
    assert await page.input_value("#reply") == greeting
    assert await page.is_hidden("#canned-suggestions")
    await page.keyboard.press("Enter")
    await page.wait_for_selector(
        f"#transcript li.role-operator .body p:text-is('{greeting}')", timeout=WAIT_MS
    )
    await page.keyboard.press("Escape")
    await page.keyboard.press("n")
    assert await page.evaluate("document.activeElement.id") == "note"
    await page.keyboard.press("Escape")
    # h hands back.
    await page.keyboard.press("h")
    await page.wait_for_selector("#control-badge:text('AI answering')", timeout=WAIT_MS)
    session = await DurableSession.objects.aget(pk=ids[0])
    assert session.control == Control.AI
    assert console.api_posts(ids[0]) == ["take-over/", "messages/", "hand-back/"]
    no_trouble(console)


# --- search and filters ---------------------------------------------------------------------


def _a_mixed_queue() -> dict[str, str]:
    olga = DurableSession.objects.model._meta.apps.get_model("auth", "User").objects.get(
        username="olga"
    )
    made = {}
    for key, says in (
        ("parcel", "my parcel never came"),
        ("refund", "I want a refund"),
        ("mine", "please call me"),
        ("ai", "what are your hours"),
    ):
        session = service.create_session(visitor=f"visitor-{key}", title=f"About {key}")
        customer = service.participant_for(session.id, "customer")
        service.post_message(session.id, author=customer, content=says)
        if key != "ai":
            service.request_handoff(session.id, by=customer, reason="asked for a person")
        if key == "mine":
            service.take_over(session.id, olga)
        made[key] = str(session.id)
    return made


async def listed(page: Page) -> set[str]:
    return set(await page.eval_on_selector_all(".rows li", "items => items.map(i => i.dataset.id)"))


async def test_search_and_filters_are_kept_in_the_url(browser, daphne):
    server = quick_server(daphne)
    await named_operator("olga", "Olga")
    ids = await db(_a_mixed_queue)()
    console = await open_page(browser, server, **LAPTOP)
    await log_in(console, "olga")
    page = console.page
    assert await listed(page) == set(ids.values())
    row = f"#section-waiting li[data-id='{ids['parcel']}']"
    assert await page.text_content(f"{row} .row-text.first") == "my parcel never came"
    assert (await page.text_content(f"{row} .row-customer")).startswith("Visitor ")
    assert await page.text_content(f"{row} .badge.state") == "needs a human"
    assert await page.get_attribute(f"{row} .dot", "aria-label") == "customer offline"
    # Unread for me: the customer's message, until I open the conversation.
    assert await page.text_content(f"{row} .unread") == "1"
    await page.click(f"{row} a")
    await page.wait_for_selector("#connection:text('Live')", timeout=WAIT_MS)
    await page.wait_for_function(
        "id => document.querySelector(`#conversation-list li[data-id='${id}'] .unread`) === null",
        arg=ids["parcel"],
        timeout=WAIT_MS,
    )
    await page.goto("/console/")
    await page.wait_for_selector("#feed-status[data-state=live]", timeout=WAIT_MS)
    assert await page.locator(f"{row} .unread").count() == 0
    assert await page.text_content(f"#section-waiting li[data-id='{ids['refund']}'] .unread") == "1"

    # A search runs on the server; its words stay in the URL.
    await page.fill("#filter-q", "parcel")
    await page.click("#filter-apply")
    await page.wait_for_url("**/console/?q=parcel*")
    await page.wait_for_selector("#feed-status[data-state=live]", timeout=WAIT_MS)
    assert await listed(page) == {ids["parcel"]}
    assert "1 shown" in await page.text_content("#filter-summary")

    # Filters apply at once and are written into the URL; a reload keeps them.
    await page.click("#filter-clear")
    await page.wait_for_url("**/console/")
    await page.select_option("#filter-state", "waiting")
    await page.wait_for_url("**/console/?state=waiting")
    assert await listed(page) == {ids["parcel"], ids["refund"]}
    await page.reload()
    await page.wait_for_selector("#feed-status[data-state=live]", timeout=WAIT_MS)
    assert await page.input_value("#filter-state") == "waiting"
    assert await listed(page) == {ids["parcel"], ids["refund"]}
    await page.select_option("#filter-state", "")
    await page.select_option("#filter-assignee", "me")
    await page.wait_for_url("**/console/?assignee=me")
    assert await listed(page) == {ids["mine"]}
    await screenshot(page, "console-queue-filtered")
    no_trouble(console)
