"""Assignment in Chromium against a real Daphne process: operators who open the console are
given waiting conversations within their capacity, only a team's members get the team's,
an operator who steps away is shown so to colleagues and gets nothing more, and a transfer
to a team puts the conversation back in the queue with the team's badge. Screenshots go to
``test-artifacts/screenshots/``; the pages pass axe-core (tests/test_browser_accessibility.py
walks them with the same header, filters and colleagues' list)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.db import database_sync_to_async

from durable_sessions import service
from durable_sessions.models import Control, DurableSession
from handoff_console.models import Team
from tests.live import server_env
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
    pytest.mark.timeout(150),
]

db = database_sync_to_async

LAPTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def assigning_server(daphne: Any) -> Any:
    env = server_env()
    env["HANDOFF_CONSOLE_JSON"] = json.dumps(
        {"AUTO_ASSIGN": "least_busy", "CAPACITY": 1, "REFRESH_SECONDS": 0.5}
    )
    return daphne(env)


def _waiting(title: str, team: str = "") -> str:
    session = service.create_session(visitor=f"visitor-{title}", title=title)
    customer = service.participant_for(session.id, "customer")
    service.post_message(session.id, author=customer, content=f"About {title}")
    service.request_handoff(session.id, by=customer, reason="asked for a person", team=team)
    return str(session.id)


def _holder(session_id: str) -> int | None:
    session = DurableSession.objects.get(pk=session_id)
    return session.assigned_operator_id if session.control == Control.HUMAN else None


async def test_operators_get_conversations_within_capacity_by_team_and_transfer_to_a_team(
    browser, daphne
):
    server = assigning_server(daphne)
    olga, piet = await operator("olga"), await operator("piet")
    billing = await Team.objects.acreate(slug="billing", name="Billing")
    await billing.members.aadd(piet)
    first = await db(_waiting)("parcel")
    invoice = await db(_waiting)("invoice", "billing")
    third = await db(_waiting)("return")

    # Olga opens the console: she is given the oldest conversation she may take, one only.
    olga_page = await open_page(browser, server, **LAPTOP)
    await log_in(olga_page, "olga")
    page = olga_page.page
    await page.wait_for_selector(f"#section-mine li[data-id='{first}']", timeout=WAIT_MS)
    await page.wait_for_selector(f"#section-waiting li[data-id='{invoice}'] .badge.team")
    assert (
        await page.text_content(f"#section-waiting li[data-id='{invoice}'] .badge.team")
        == "billing"
    )
    assert await db(_holder)(third) is None and await db(_holder)(invoice) is None
    # The team filter keeps the team's conversations, in the URL.
    await page.select_option("#filter-team", "billing")
    assert "team=billing" in page.url
    await page.wait_for_selector(f"#section-waiting li[data-id='{third}']", state="detached")
    await screenshot(page, "assignment-queue-laptop")
    await page.select_option("#filter-team", "")

    # She steps away: her colleague sees it; Piet, of the billing team, gets its conversation.
    await page.select_option("#availability", "away")
    piet_page = await open_page(browser, server, **PHONE)
    await log_in(piet_page, "piet")
    await piet_page.page.wait_for_selector(
        f"#section-mine li[data-id='{invoice}']", timeout=WAIT_MS
    )
    await piet_page.page.wait_for_selector(
        f"#colleagues li[data-id='{olga.pk}'][data-availability=away]", timeout=WAIT_MS
    )
    await screenshot(piet_page.page, "assignment-queue-phone")
    assert await db(_holder)(third) is None  # Piet is at capacity, Olga away

    # Olga back online, her first conversation transferred to billing with a note: it waits
    # for the team again; Olga, with room now, is given the other one.
    await page.select_option("#availability", "online")
    await open_session(olga_page, first)
    await page.select_option("#transfer-to", "team:billing")
    await page.fill("#transfer-note", "a refund: billing decides")
    await page.click("#transfer")
    await page.wait_for_selector("#control-badge:text('Waiting for a human')", timeout=WAIT_MS)
    await page.wait_for_selector(
        f"#conversation-list li[data-id='{first}'] .badge.team", timeout=WAIT_MS
    )
    await page.wait_for_function(
        "() => document.querySelector('#brief-reason').textContent"
        ".startsWith('a refund: billing decides')",
        timeout=WAIT_MS,
    )
    await page.wait_for_selector(f"#conversation-list li[data-id='{third}']", timeout=WAIT_MS)
    for _ in range(100):
        if await db(_holder)(third) == olga.pk:
            break
        await page.wait_for_timeout(100)
    assert await db(_holder)(third) == olga.pk
    assert await db(_holder)(first) is None  # billing's only member is at capacity
    await screenshot(page, "assignment-transfer-to-team")
    assert f"/console/api/sessions/{first}/transfer-team/" in olga_page.posts
    assert olga_page.posts.count("/console/api/availability/") == 2
    no_trouble(olga_page, piet_page)
