"""Runs that lose their worker are continued by another one: finished steps are not
redone, cut text is not written twice, a tool cut off mid-call is not run again; after
RUN_MAX_ATTEMPTS the session escalates as before. Stopping workers hand runs back; claims
are spread over the live workers."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from durable_sessions import service, wire
from durable_sessions.models import (
    AgentRun,
    AgentWorker,
    Control,
    DurableSession,
    Event,
    Message,
    MessagePart,
    MessageState,
    ParticipantKind,
    PartState,
    RunStatus,
)
from durable_sessions.runtime.tool_calls import OUTCOME_UNKNOWN
from durable_sessions.runtime.worker import Worker
from durable_sessions.service import parts, runs, workers
from durable_sessions.service.deltas import _Delta, write_batch
from tests.factories import anonymous_session, open_ws
from tests.resume_agents import count
from tests.test_runtime import REPLY, frames_until, runtime_settings

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async


def _dead_run(session, text: str = "", worker: str = "dead-worker") -> AgentRun:
    """A run whose process died mid-reply: running, its lease expired, ``text`` written
    into an open text part."""
    customer = service.participant_for(session.id, ParticipantKind.CUSTOMER)
    trigger = service.post_message(session.id, author=customer, content="hi").message
    run = AgentRun.objects.get(trigger=trigger)
    runs.claim(run.pk, worker)
    reply = service.start_assistant_message(session.id)
    runs.attach_message(run.pk, reply.pk)
    if text:
        part = parts.start_part(reply.pk, "text", index=0)
        write_batch([_Delta(session.id, reply.pk, text, part.pk, part.wire_id)])
    expire(run.pk)
    return AgentRun.objects.get(pk=run.pk)


def expire(run_id: int) -> None:
    AgentRun.objects.filter(pk=run_id).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


async def wait_for(predicate, limit: float = 15):
    for _ in range(int(limit / 0.05)):
        value = await db(predicate)()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("never happened")


def finished_run(run_id: int) -> AgentRun | None:
    run = AgentRun.objects.get(pk=run_id)
    return run if run.status not in (RunStatus.PENDING, RunStatus.RUNNING) else None


def text_parts(message_id: int) -> list[tuple[str, str]]:
    return list(
        MessagePart.objects.filter(message_id=message_id, type="text")
        .order_by("index")
        .values_list("state", "text")
    )


async def test_a_dead_run_is_continued_by_another_worker_without_writing_its_text_twice(
    settings,
):
    runtime_settings(settings)
    session, store = await db(anonymous_session)()
    run = await db(_dead_run)(session, REPLY[:25])
    comm, _ = await open_ws(session.id, store=store)
    assert await service.acrash_run(run.pk)  # what a sweep does first
    frames = await frames_until(comm, lambda f: f.get("status") == "reconnecting")
    retrying = next(f for f in frames if f.get("type") == wire.RUN_RETRYING)
    assert retrying["data"] == {
        "run_id": run.pk,
        "message_id": run.message_id,
        "attempt": 2,
        "max_attempts": 2,
        "reason": "worker_lost",
    }
    assert not [f for f in frames if f.get("type") in ("message.failed", "control.changed")]
    again, first = await open_ws(session.id, store=store)
    assert first[0]["agent"]["status"] == "reconnecting"
    await again.disconnect()
    pending = await AgentRun.objects.aget(pk=run.pk)
    assert (pending.status, pending.attempts, pending.crashes) == (RunStatus.PENDING, 1, 1)

    reaper = Worker("reaper")
    await reaper.sweep_once()  # picks the run up again, as any worker's sweep does
    frames += await frames_until(comm, lambda f: f.get("type") == "message.completed")
    await wait_for(lambda: finished_run(run.pk))
    await reaper.stop()
    done = await AgentRun.objects.aget(pk=run.pk)
    assert (done.status, done.attempts, done.crashes, done.worker) == (
        RunStatus.COMPLETED,
        2,
        1,
        "reaper",
    )
    reply = await Message.objects.aget(pk=run.message_id)
    # One reply, one text part, the answer once: the cut text was continued, not repeated.
    assert (reply.state, reply.content) == (MessageState.COMPLETE, REPLY)
    assert await db(text_parts)(reply.pk) == [(PartState.DONE, REPLY)]
    assert (
        "".join(f["data"]["text"] for f in frames if f["type"] == "message.delta") == (REPLY[25:])
    )
    assert await Message.objects.filter(role="assistant").acount() == 1
    assert {"type": "agent.status", "status": "thinking", "run_id": run.pk} in frames
    await comm.disconnect()


async def test_a_restarted_answer_cuts_the_old_text_instead_of_repeating_it(settings):
    runtime_settings(
        settings,
        AGENT="tests.resume_agents.SlowTextAgent",
        AGENT_OPTIONS={"reply": REPLY, "tokens_per_second": 0, "variant": True},
    )
    session, store = await db(anonymous_session)()
    run = await db(_dead_run)(session, REPLY[:25])
    comm, _ = await open_ws(session.id, store=store)
    worker = Worker("second")
    await worker.sweep_once()  # requeues, claims and continues
    frames = await frames_until(comm, lambda f: f.get("type") == "message.completed")
    await wait_for(lambda: finished_run(run.pk))
    await worker.stop()
    cut = next(f for f in frames if f["type"] == "part.ended" and f["data"].get("cut"))
    assert cut["data"]["state"] == PartState.CANCELLED
    restarted = "Sorry, let me start again. " + REPLY
    reply = await Message.objects.aget(pk=run.message_id)
    assert reply.content == restarted
    assert await db(text_parts)(reply.pk) == [
        (PartState.CANCELLED, REPLY[:25]),
        (PartState.DONE, restarted),
    ]
    completed = frames[-1]
    assert completed["data"]["length"] == len(restarted)
    await comm.disconnect()


async def test_after_max_attempts_the_session_escalates_as_before(settings):
    runtime_settings(settings, RUN_MAX_ATTEMPTS=2)
    session, store = await db(anonymous_session)()
    run = await db(_dead_run)(session, "half a rep")
    await db(AgentRun.objects.filter(pk=run.pk).update)(crashes=1, attempts=2)
    comm, _ = await open_ws(session.id, store=store)
    await Worker("reaper").sweep_once()
    frames = await frames_until(comm, lambda f: f.get("status") == "unresponsive")
    assert not [f for f in frames if f.get("type") == wire.RUN_RETRYING]
    assert next(f for f in frames if f.get("type") == "control.changed")["data"]["control"] == (
        "queued"
    )
    crashed = await AgentRun.objects.aget(pk=run.pk)
    assert (crashed.status, crashed.crashes) == (RunStatus.CRASHED, 2)
    assert (await DurableSession.objects.aget(pk=session.pk)).control == Control.QUEUED
    await comm.disconnect()


async def test_a_run_is_not_retried_once_a_human_took_over(settings):
    runtime_settings(settings)
    session, _ = await db(anonymous_session)()
    run = await db(_dead_run)(session, "half")
    await db(DurableSession.objects.filter(pk=session.pk).update)(control=Control.HUMAN)
    await Worker("reaper").sweep_once()
    assert (await AgentRun.objects.aget(pk=run.pk)).status == RunStatus.CRASHED
    assert not await Event.objects.filter(session=session, type=wire.RUN_RETRYING).aexists()


def _dead_run_in_a_tool(session, tool_name: str, log: str) -> AgentRun:
    """A run whose worker died while its tool ran: the call is ``running``."""
    run = _dead_run(session)
    part = parts.start_part(
        run.message_id, "tool_call", index=0, tool_name=tool_name, tool_call_id="call_record"
    )
    parts.tool_input_ready(part.pk, {"log": log})
    expire(run.pk)
    return run


@pytest.mark.parametrize("idempotent", [False, True])
async def test_a_tool_cut_off_mid_call_is_not_run_again_unless_idempotent(
    settings, tmp_path, idempotent
):
    log = str(tmp_path / "calls.log")
    runtime_settings(
        settings,
        AGENT="tests.resume_agents.ToolThenTextAgent",
        AGENT_OPTIONS={"log": log, "reply": "all done", "idempotent": idempotent},
    )
    session, _ = await db(anonymous_session)()
    name = "record_again" if idempotent else "record"
    run = await db(_dead_run_in_a_tool)(session, name, log)
    worker = Worker("second")
    await worker.sweep_once()
    await wait_for(lambda: finished_run(run.pk))
    await worker.stop()
    call = await MessagePart.objects.aget(message_id=run.message_id, type="tool_call")
    if idempotent:
        assert (call.state, call.output, await db(count)(log)) == ("done", {"recorded": True}, 1)
    else:
        assert (call.state, call.error, await db(count)(log)) == ("error", OUTCOME_UNKNOWN, 0)
    reply = await Message.objects.aget(pk=run.message_id)
    assert (reply.state, reply.content) == (MessageState.COMPLETE, "all done")


async def test_a_stopping_worker_hands_its_run_back_and_another_finishes_it(settings):
    runtime_settings(
        settings,
        AGENT="tests.resume_agents.SlowTextAgent",
        AGENT_OPTIONS={"reply": REPLY, "tokens_per_second": 40},
    )
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    first = Worker("first")
    first.start()
    await comm.send_json_to({"type": "message.send", "content": "hi", "client_id": "c1"})
    frames = await frames_until(comm, lambda f: f.get("type") == "message.delta")
    await first.drain(grace=0)
    frames += await frames_until(comm, lambda f: f.get("status") == "reconnecting")
    run = await AgentRun.objects.aget()
    assert (run.status, run.crashes, run.worker) == (RunStatus.PENDING, 0, "")
    retry = next(f for f in frames if f.get("type") == wire.RUN_RETRYING)
    assert retry["data"]["reason"] == "handed_back"
    assert not await AgentWorker.objects.filter(name="first").aexists()
    second = Worker("second")
    second.start()
    frames += await frames_until(comm, lambda f: f.get("type") == "message.completed")
    await wait_for(lambda: finished_run(run.pk))
    await second.stop()
    reply = await Message.objects.aget(role="assistant")
    assert (reply.state, reply.content) == (MessageState.COMPLETE, REPLY)
    assert "".join(f["data"]["text"] for f in frames if f["type"] == "message.delta") == REPLY
    assert "unresponsive" not in [f.get("status") for f in frames]
    done = await AgentRun.objects.aget(pk=run.pk)
    assert (done.status, done.attempts, done.crashes) == (RunStatus.COMPLETED, 2, 0)
    await comm.disconnect()


async def test_a_stopping_worker_finishes_its_run_within_the_grace(settings):
    runtime_settings(
        settings,
        AGENT="tests.resume_agents.SlowTextAgent",
        AGENT_OPTIONS={"reply": REPLY, "tokens_per_second": 60},
    )
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    worker = Worker("only")
    worker.start()
    await comm.send_json_to({"type": "message.send", "content": "hi", "client_id": "c1"})
    await frames_until(comm, lambda f: f.get("type") == "message.delta")
    await worker.drain(grace=30)
    run = await AgentRun.objects.aget()
    assert (run.status, run.attempts, run.worker) == (RunStatus.COMPLETED, 1, "only")
    assert not await Event.objects.filter(type=wire.RUN_RETRYING).aexists()
    await comm.disconnect()


def test_the_fair_share_divides_the_runs_in_flight_among_live_workers():
    assert [workers.share(running, 2) for running in range(5)] == [1, 1, 2, 2, 3]
    assert workers.share(7, 1) == 8
    assert workers.share(0, 0) == 1


async def test_claims_are_spread_over_the_live_workers_within_their_limit(settings):
    runtime_settings(
        settings,
        MAX_CONCURRENT_RUNS=3,
        AGENT="tests.resume_agents.SlowTextAgent",
        AGENT_OPTIONS={"reply": REPLY, "tokens_per_second": 5},
    )
    alpha, beta = Worker("alpha"), Worker("beta")
    for w in (alpha, beta):
        await db(workers.seen)(w.id)
    for n in range(6):
        session, _ = await db(anonymous_session)(f"visitor-{n}")
        customer = await db(service.participant_for)(session.id, ParticipantKind.CUSTOMER)
        await service.apost_message(session.id, author=customer, content="hi")
    try:
        alpha.start()  # alpha hears of every run first
        beta.start()

        def all_running():
            return AgentRun.objects.filter(status=RunStatus.RUNNING).count() == 6

        await wait_for(all_running)
        held = {
            name: await AgentRun.objects.filter(worker=name, status=RunStatus.RUNNING).acount()
            for name in ("alpha", "beta")
        }
        assert held == {"alpha": 3, "beta": 3}
    finally:
        await alpha.stop()
        await beta.stop()


def test_the_api_shows_the_run_attempts_and_the_agent_reconnecting(settings):
    from django.test import Client
    from django.urls import reverse

    runtime_settings(settings)
    session, store = anonymous_session()
    run = _dead_run(session, "half")
    assert service.crash_run(run.pk)
    client = Client()
    client.cookies["sessionid"] = store.session_key
    body = client.get(reverse("durable_sessions:session-detail", args=[session.id])).json()
    assert body["agent_status"] == "reconnecting"
    assert {k: body["run"][k] for k in ("id", "status", "attempts", "crashes", "max_attempts")} == {
        "id": run.pk,
        "status": "pending",
        "attempts": 1,
        "crashes": 1,
        "max_attempts": 2,
    }


def test_the_admin_lists_each_run_with_its_attempts_and_crashes(admin_client, settings):
    import re

    from django.urls import reverse

    runtime_settings(settings)
    session, _ = anonymous_session()
    run = _dead_run(session, "half")
    assert service.crash_run(run.pk)
    page = admin_client.get(
        reverse("admin:durable_sessions_durablesession_change", args=[session.pk])
    ).content.decode()
    row = re.search(rf'<tr class="ds-run" data-run="{run.pk}">(.*?)</tr>', page, re.S).group(1)
    assert '<td class="ds-run-attempts">1</td>' in row
    assert '<td class="ds-run-crashes">1</td>' in row
    assert "Pending" in row and "attempt 1: lease expired" in row


@pytest.mark.parametrize(
    ("configured", "message"),
    [
        ({"RUN_MAX_ATTEMPTS": 0}, "DURABLE_SESSIONS['RUN_MAX_ATTEMPTS'] must be > 0, not 0"),
        ({"RUN_MAX_ATTEMPTS": 1.5}, "DURABLE_SESSIONS['RUN_MAX_ATTEMPTS'] must be an int"),
        ({"DRAIN_GRACE": -1}, "DURABLE_SESSIONS['DRAIN_GRACE'] must be >= 0 (0: off), not -1"),
        ({"DRAIN_GRACE": "10"}, "DURABLE_SESSIONS['DRAIN_GRACE'] must be a number"),
    ],
)
def test_the_retry_and_drain_settings_refuse_bad_values(settings, configured, message):
    from django.core.exceptions import ImproperlyConfigured

    from durable_sessions.app_settings import ds_settings

    settings.DURABLE_SESSIONS = configured
    with pytest.raises(ImproperlyConfigured) as raised:
        ds_settings.RUN_MAX_ATTEMPTS  # noqa: B018 (the whole dict is validated)
    assert message in str(raised.value)
    settings.DURABLE_SESSIONS = {"DRAIN_GRACE": 0}
    assert ds_settings.DRAIN_GRACE == 0


def test_only_a_run_waiting_for_another_worker_is_reconnecting(settings):
    runtime_settings(settings)
    session, _ = anonymous_session()
    run = _dead_run(session, "half")
    assert service.crash_run(run.pk)
    assert runs.agent_status(session.id) == "reconnecting"
    runs.claim(run.pk, "next-worker")  # claimed again: no longer waiting
    assert AgentRun.objects.get(pk=run.pk).retry_reason == ""
    assert runs.agent_status(session.id) == "streaming"
    # A run made pending again by an approval (claimed before, never lost) is thinking.
    AgentRun.objects.filter(pk=run.pk).update(status=RunStatus.PENDING, worker="")
    assert runs.agent_status(session.id) == "thinking"


async def test_a_run_beyond_the_fair_share_is_taken_once_it_waited_two_sweeps(settings):
    runtime_settings(
        settings,
        AGENT="tests.resume_agents.SlowTextAgent",
        AGENT_OPTIONS={"reply": REPLY, "tokens_per_second": 5},
    )
    await db(workers.seen)("ghost")  # noted as live, but died without a run
    solo = Worker("solo")
    for n in range(2):
        session, _ = await db(anonymous_session)(f"visitor-{n}")
        customer = await db(service.participant_for)(session.id, ParticipantKind.CUSTOMER)
        await service.apost_message(session.id, author=customer, content="hi")
    try:
        solo.start()

        def both_running():
            return AgentRun.objects.filter(status=RunStatus.RUNNING, worker="solo").count() == 2

        await wait_for(both_running)
    finally:
        await solo.stop()
