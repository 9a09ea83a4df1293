"""The customer page while a reply's worker is lost and another continues it: a
"reconnecting" notice, never an error, and the answer's text once."""

from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async

from durable_sessions import service
from durable_sessions.models import AgentRun, ParticipantKind, RunStatus
from durable_sessions.runtime.worker import Worker
from durable_sessions.service import parts, runs
from durable_sessions.service.deltas import _Delta, write_batch
from tests.factories import anonymous_session
from tests.live import server_env
from tests.test_browser_chat import (
    ASSISTANT,
    WAIT_MS,
    browser_test,
    new_context,
    no_trouble,
    open_page,
    reply_text,
    screenshot,
    send,
    start_chat,
    wait_for_reply_chars,
    wait_for_reply_state,
)
from tests.test_run_retries import expire

ANSWER = "Your parcel left our warehouse this morning and arrives on Thursday."
CUT = ANSWER[:30]


def lose_the_worker(run_id: int) -> None:
    """A worker claims the run, writes part of the answer and dies; the reaper retries it."""
    run = runs.claim(run_id, "lost-worker")
    reply = service.start_assistant_message(run.session_id)
    runs.attach_message(run.pk, reply.pk)
    part = parts.start_part(reply.pk, "text", index=0)
    write_batch([_Delta(run.session_id, reply.pk, CUT, part.pk, part.wire_id)])
    expire(run.pk)
    assert service.crash_run(run.pk)


async def pending_run() -> AgentRun:
    for _ in range(400):
        run = await AgentRun.objects.filter(status=RunStatus.PENDING).afirst()
        if run is not None:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError("no pending run")


@browser_test
async def test_the_customer_sees_reconnecting_then_the_answer_once(browser, daphne, settings):
    # No worker runs in the server: this test plays the lost worker and the next one.
    server = daphne(server_env(ds_settings={"RUNNER": "worker", "RESYNC_INTERVAL": 0.3}))
    context = await new_context(browser, server)
    tab = await open_page(context)
    await start_chat(tab)
    await send(tab.page, "Where is my parcel?")
    run = await pending_run()
    await database_sync_to_async(lose_the_worker)(run.pk)

    page = tab.page
    await page.wait_for_selector("#agent-state[data-agent=reconnecting]", timeout=WAIT_MS)
    assert await page.text_content("#agent-state") == "Reconnecting to the assistant…"
    assert await wait_for_reply_chars(page, len(CUT)) == CUT
    assert await page.is_hidden("#notice")  # no error while the retry is under way
    assert await page.get_attribute(ASSISTANT, "data-state") == "streaming"
    await screenshot(page, "retry-reconnecting")

    settings.DURABLE_SESSIONS = {
        "RUNNER": "worker",
        "AGENT_OPTIONS": {"thinking_seconds": 0, "tokens_per_second": 0, "reply": ANSWER},
    }
    rescuer = Worker("rescuer")
    await rescuer.sweep_once()
    for _ in range(400):
        if (await AgentRun.objects.aget(pk=run.pk)).status == RunStatus.COMPLETED:
            break
        await asyncio.sleep(0.05)
    await rescuer.stop()
    assert await wait_for_reply_state(page, "complete") == ANSWER
    assert await reply_text(page) == ANSWER
    assert await page.locator(f"{ASSISTANT} .part-cut").count() == 0
    assert (await page.text_content("#log") or "").count(CUT) == 1  # continued, not repeated
    await page.wait_for_selector("#agent-state", state="hidden", timeout=WAIT_MS)
    assert await page.is_hidden("#notice")
    no_trouble(tab)
    await context.close()


@browser_test
async def test_a_restarted_answer_shows_the_cut_text_struck_through(browser, daphne, settings):
    server = daphne(server_env(ds_settings={"RUNNER": "worker", "RESYNC_INTERVAL": 0.3}))
    context = await new_context(browser, server)
    tab = await open_page(context)
    await start_chat(tab)
    await send(tab.page, "Where is my parcel?")
    run = await pending_run()
    await database_sync_to_async(lose_the_worker)(run.pk)
    page = tab.page
    await wait_for_reply_chars(page, len(CUT))
    settings.DURABLE_SESSIONS = {
        "RUNNER": "worker",
        "AGENT": "tests.resume_agents.SlowTextAgent",
        "AGENT_OPTIONS": {"reply": ANSWER, "tokens_per_second": 0, "variant": True},
    }
    rescuer = Worker("rescuer")
    await rescuer.sweep_once()
    for _ in range(400):
        if (await AgentRun.objects.aget(pk=run.pk)).status == RunStatus.COMPLETED:
            break
        await asyncio.sleep(0.05)
    await rescuer.stop()
    await wait_for_reply_state(page, "complete")
    cut = page.locator(f"{ASSISTANT} .part-cut")
    assert await cut.text_content() == CUT
    assert "line-through" in await cut.evaluate("n => getComputedStyle(n).textDecorationLine")
    restart = "Sorry, let me start again. " + ANSWER
    live = page.locator(f"{ASSISTANT} .part-text:not(.part-cut)")
    assert await live.all_text_contents() == [restart]
    await screenshot(page, "retry-restarted")
    no_trouble(tab)
    await context.close()


@browser_test
async def test_the_console_shows_which_attempt_the_assistant_reconnects_for(
    browser, daphne, settings
):
    from tests.test_browser_console import log_in, open_session, operator
    from tests.test_browser_console import open_page as open_console

    server = daphne(server_env(ds_settings={"RUNNER": "worker", "RESYNC_INTERVAL": 0.3}))
    await operator("olga")
    console = await open_console(browser, server)
    await log_in(console, "olga")
    session, _ = await database_sync_to_async(anonymous_session)()
    customer = await database_sync_to_async(service.participant_for)(
        session.id, ParticipantKind.CUSTOMER
    )
    await service.apost_message(session.id, author=customer, content="Where is my parcel?")
    await open_session(console, str(session.id))
    run = await pending_run()
    await database_sync_to_async(lose_the_worker)(run.pk)
    agent = console.page.locator("#presence-agent[data-status=reconnecting]")
    await agent.wait_for(timeout=WAIT_MS)
    assert await agent.get_attribute("data-attempt") == "2"
    text = await agent.text_content() or ""
    assert f"attempt 2 of run {run.pk}" in text and "worker was lost" in text
    await screenshot(console.page, "console-retry")
    no_trouble(console)
