"""A shift in the console, in Chromium against a real Daphne process with the demo agent:
50 conversations; an operator opens the console at 1280x800 and is given waiting customers
up to her capacity; she filters and searches, approves a refund from the context panel,
greets a customer with a canned reply and transfers them to the billing team (a member,
on a phone at 390x844, is given the oldest waiting conversations he may answer; she is never
given billing's), closes the refund conversation, and the customer rates it, which the
console shows. Each page passes axe-core (no serious or
critical violation); screenshots go to ``test-artifacts/screenshots/shift-*.png``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async

from durable_sessions import service
from durable_sessions.models import Control, DurableSession
from handoff_console.models import CannedReply, Team
from tests import services
from tests.live import server_env
from tests.test_browser_accessibility import violations
from tests.test_browser_chat import new_context, send, start_chat
from tests.test_browser_chat import open_page as open_tab
from tests.test_browser_console import (
    WAIT_MS,
    log_in,
    no_trouble,
    open_page,
    open_session,
    operator,
    screenshot,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(240),
]

db = database_sync_to_async

LAPTOP = {"viewport": {"width": 1280, "height": 800}, "bypass_csp": True}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "bypass_csp": True,
}
CAPACITY = 3


def shift_server(daphne: Any) -> Any:
    agent = {"reply": None, "thinking_seconds": 0.1, "tokens_per_second": 80}
    env = server_env(ds_settings={"RUNNER": "embedded", "AGENT_OPTIONS": agent})
    env["HANDOFF_CONSOLE_JSON"] = json.dumps(
        {"AUTO_ASSIGN": "least_busy", "CAPACITY": CAPACITY, "REFRESH_SECONDS": 0.5}
    )
    return daphne(env)


def _fifty_conversations() -> dict[str, list[str]]:
    """48 conversations made through the service (the browser makes the other two): 12
    waiting for anyone, 6 for the billing team, 25 with the AI, 5 closed."""
    made: dict[str, list[str]] = {"waiting": [], "billing": [], "ai": [], "closed": []}
    for n in range(48):
        kind = "waiting" if n < 12 else "billing" if n < 18 else "ai" if n < 43 else "closed"
        session = service.create_session(visitor=f"visitor-{n}", title=f"Order {1000 + n}")
        customer = service.participant_for(session.id, "customer")
        if kind in ("waiting", "billing"):
            # Queued before the customer writes: no agent run is started.
            service.request_handoff(
                session.id, by=customer, reason="asked", team="billing" if kind == "billing" else ""
            )
            topic = "invoice" if kind == "billing" else "parcel"
            service.post_message(session.id, author=customer, content=f"My {topic} {1000 + n}")
        elif kind == "closed":
            service.close_session(session.id)
        made[kind].append(str(session.id))
    return made


def _load(user_id: int) -> int:
    return DurableSession.objects.filter(
        status="open", control=Control.HUMAN, assigned_operator_id=user_id
    ).count()


async def eventually(check: Any) -> None:
    for _ in range(WAIT_MS // 100):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def test_a_shift_with_fifty_conversations(browser, daphne):
    axe = services.require_axe()
    server = shift_server(daphne)
    olga, piet = await operator("olga"), await operator("piet")
    billing = await Team.objects.acreate(slug="billing", name="Billing")
    await billing.members.aadd(piet)
    await CannedReply.objects.acreate(shortcut="greet", text="Hello {customer_name}, Olga here.")
    made = await db(_fifty_conversations)()
    found: dict[str, list[dict[str, Any]]] = {}

    # A customer on a phone asks for a refund over the limit: the agent waits for approval.
    customer_context = await new_context(browser, server, **PHONE)
    customer = await open_tab(customer_context)
    refund = await start_chat(customer)
    await send(customer.page, "Please refund order 1003")
    await customer.page.wait_for_selector(
        "#log .tool-card[data-state='awaiting-approval']", timeout=WAIT_MS
    )
    # And one more conversation, from another visitor, is with the AI: 50 in all.
    other = await open_tab(await new_context(browser, server))
    await start_chat(other)

    # Olga opens the console: given the oldest waiting customers, up to her capacity.
    console = await open_page(browser, server, **LAPTOP)
    await log_in(console, "olga")
    page = console.page
    await eventually(lambda: _is(olga))
    await page.wait_for_function(
        f"() => document.querySelectorAll('#section-mine li').length === {CAPACITY}",
        timeout=WAIT_MS,
    )
    mine = await page.eval_on_selector_all("#section-mine li", "l => l.map(e => e.dataset.id)")
    assert sorted(mine) == sorted(made["waiting"][:CAPACITY])
    assert await db(_load)(olga.pk) == CAPACITY
    await page.wait_for_selector(f"li[data-id='{refund}'][data-agent=awaiting_approval]")
    await screenshot(page, "shift-queue-laptop")
    found["queue"] = await violations(page, axe)

    # Filters (in the URL) and a search (on the server).
    await page.select_option("#filter-team", "billing")
    await page.wait_for_function(
        "() => document.querySelectorAll('#section-waiting li').length === 6"
        " && document.querySelectorAll('#section-mine li').length === 0"
    )
    await page.select_option("#filter-team", "")
    await page.select_option("#filter-state", "waiting")
    await page.wait_for_function(
        "() => document.querySelectorAll('#section-waiting li').length === 15"
        " && document.querySelectorAll('#section-ai li').length === 0"
    )
    assert "state=waiting" in page.url
    await page.fill("#filter-q", "refund")
    await page.click("#filter-apply")
    await page.wait_for_url("**q=refund**")
    await page.select_option("#filter-state", "")
    await page.wait_for_selector(f"#section-ai li[data-id='{refund}']", timeout=WAIT_MS)
    assert await page.locator("#queue ol.rows li").count() == 1

    # The refund: approved from the context panel.
    await open_session(console, refund)
    await page.wait_for_selector("#tools-waiting:text('1 waiting for approval')", timeout=WAIT_MS)
    found["session"] = await violations(page, axe)
    await page.locator("#tool-calls .tool-card .approve").click()
    await page.wait_for_selector("#tool-calls .tool-card[data-state=done]", timeout=WAIT_MS)
    await customer.page.wait_for_selector("#log .tool-card[data-state=done]", timeout=WAIT_MS)

    # A waiting customer: greeted with a canned reply, then transferred to billing.
    first = made["waiting"][0]
    await open_session(console, first)
    await page.click("#reply")
    await page.keyboard.type("/gr")
    await page.wait_for_selector("#canned-suggestions li[aria-selected=true]")
    await page.keyboard.press("Enter")
    greeting = await page.input_value("#reply")
    assert greeting.startswith("Hello Visitor ") and greeting.endswith(", Olga here.")
    await page.keyboard.press("Enter")
    await page.wait_for_selector(f"#transcript li.role-operator .body p:text-is('{greeting}')")
    await page.select_option("#transfer-to", "team:billing")
    await page.fill("#transfer-note", "an invoice question")
    await page.click("#transfer")
    await page.wait_for_selector("#control-badge:text('Waiting for a human')", timeout=WAIT_MS)
    # Room again: the next waiting customer is given to her, never more than her capacity.
    await eventually(lambda: _holds(olga, made["waiting"][CAPACITY]))
    assert await db(_load)(olga.pk) == CAPACITY
    await screenshot(page, "shift-transfer-laptop")

    # Piet, of billing, on his phone: given waiting conversations up to his capacity.
    phone = await open_page(browser, server, **PHONE)
    await log_in(phone, "piet")
    await phone.page.wait_for_function(
        f"() => document.querySelectorAll('#section-mine li').length === {CAPACITY}",
        timeout=WAIT_MS,
    )
    theirs = await phone.page.eval_on_selector_all(
        "#section-mine li", "l => l.map(e => e.dataset.id)"
    )
    # The oldest waiting customers he may answer: anyone's first, then billing's.
    assert sorted(theirs) == sorted(made["waiting"][CAPACITY + 1 : 2 * CAPACITY + 1])
    billing_holders = await db(_holders)(made["billing"] + [first])
    assert olga.pk not in billing_holders  # billing's conversations never go to her
    await phone.page.wait_for_selector(
        f"#colleagues li[data-id='{olga.pk}'][data-availability=online]", timeout=WAIT_MS
    )
    await screenshot(phone.page, "shift-queue-phone")
    found["queue-phone"] = await violations(phone.page, axe)

    # Olga takes the refund conversation over and closes it; the customer rates it.
    await open_session(console, refund)
    await page.click("#take-over")
    await page.wait_for_selector("#control-badge:text('You are answering')")
    await page.click("#close")
    await page.wait_for_selector("#control-badge:text('Closed')", timeout=WAIT_MS)
    await customer.page.wait_for_selector("#rating:not([hidden])", timeout=WAIT_MS)
    found["rating"] = await violations(customer.page, axe)
    await customer.page.check("#rating input[value='5']")
    await customer.page.fill("#rating-comment", "Refund approved in minutes")
    await customer.page.click("#rate")
    await customer.page.wait_for_selector("#rated:text('5 out of 5')", timeout=WAIT_MS)
    await page.wait_for_selector("#rating-score:text-is('5 out of 5')", timeout=WAIT_MS)
    await page.goto("/console/?state=closed")
    await page.wait_for_selector(f"#section-closed li[data-id='{refund}'] .rating:text('5/5')")
    await screenshot(page, "shift-closed-rated")
    await screenshot(customer.page, "shift-customer-rated-phone")

    assert {name: v for name, v in found.items() if v} == {}
    no_trouble(console, phone)


def _holders(session_ids: list[str]) -> set[int | None]:
    return set(
        DurableSession.objects.filter(pk__in=session_ids).values_list(
            "assigned_operator_id", flat=True
        )
    )


def _holds_sync(user_id: int, session_id: str) -> bool:
    return DurableSession.objects.filter(
        pk=session_id, control=Control.HUMAN, assigned_operator_id=user_id
    ).exists()


async def _holds(user: Any, session_id: str) -> bool:
    return await db(_holds_sync)(user.pk, session_id)


async def _is(user: Any) -> bool:
    return await db(_load)(user.pk) == CAPACITY
