"""Steering, interrupting and branches with real processes on PostgreSQL and Redis: two
Daphne servers and a worker process. A phone steers the answer the laptop is reading; both
see the agent take it, the answer changes, a reload resumes exactly across it, and a new
device replays the same log; then the laptop interrupts an answer and a new run answers.
An edit and a branch switch made on one device show on the other, and every device ends
on the same branch as the database."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async

from durable_sessions.agents.demo import REPLIES
from durable_sessions.models import Message, MessageState
from tests.factories import anonymous_session
from tests.live import server_env
from tests.test_e2e_runtime import of_type
from tests.test_e2e_turns import Device, a_new_device_sees_the_same_log, log_of

db = database_sync_to_async

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.timeout(120)]

PLAN = " ".join(f"Step {i} of the plan." for i in range(1, 61))


def send(content: str, client_id: str, mode: str | None = None) -> str:
    frame = {"type": "message.send", "content": content, "client_id": client_id}
    if mode:
        frame["mode"] = mode
    return json.dumps(frame)


# Reads through database_sync_to_async, which closes its connection (one left open by the
# async ORM would keep the PostgreSQL test database from being dropped).
@db
def replies_of() -> list[Message]:
    return list(Message.objects.filter(role="assistant").order_by("seq"))


def ack_of(client_id: str):
    return lambda f: f.get("type") == "ack" and f.get("client_id") == client_id


async def test_a_phone_steers_the_answer_a_laptop_reads_and_interrupts_work_across_servers(
    daphne, agent_worker, postgres, redis_url
):
    env = server_env(
        redis_url=redis_url,
        ds_settings={
            "RUNNER": "worker",
            "RUN_SWEEP_INTERVAL": 0.3,
            "FLUSH_INTERVAL_MS": 30,
            "AGENT_OPTIONS": {"thinking_seconds": 0.1, "tokens_per_second": 30, "reply": PLAN},
        },
    )
    servers = [daphne(env), daphne(env)]
    agent_worker(env, "alpha")
    session, store = await db(anonymous_session)()
    laptop = Device(servers, session, store)
    await laptop.open()
    phone = Device(list(reversed(servers)), session, store)
    await phone.open()

    await laptop.ws.send(send("Tell me the plan", "c1"))
    await laptop.until(of_type("message.delta"))
    await phone.ws.send(send("What about a refund?", "c2", mode="steer"))
    acked = await phone.until(ack_of("c2"))
    assert acked[-1]["mode"] == "steer"
    steered = (await laptop.until(of_type("run.steered")))[-1]
    await laptop.reload()  # resume on the other server, across the steering
    await laptop.until(of_type("message.completed"))
    await phone.until(of_type("message.completed"))
    for device in (laptop, phone):
        log = log_of(device.frames)
        seqs = [f["seq"] for f in log]
        assert seqs == sorted(set(seqs))  # nothing twice, in order
        assert steered["seq"] in seqs
    (reply,) = await replies_of()
    assert steered["data"]["reply_id"] == reply.pk
    assert 'Change of plan, you said: "What about a refund?".' in reply.content
    assert reply.content.startswith("Step 1") and "Step 60 of the plan." not in reply.content
    texts = "".join(
        f["data"]["text"] for f in log_of(laptop.frames) if f["type"] == "message.delta"
    )
    assert texts == reply.content  # the reloaded laptop assembled exactly the stored text
    await a_new_device_sees_the_same_log(servers, session, store, laptop.last_seq)

    # Interrupt: the answer stops with its text kept, and a new run answers.
    await laptop.ws.send(send("Tell me the plan again", "c3"))
    await laptop.until(of_type("message.delta"))
    await laptop.ws.send(send("Stop, never mind", "c4", mode="interrupt"))
    cancelled = (await laptop.until(of_type("message.cancelled")))[-1]
    assert cancelled["data"]["reason"] == "interrupted"
    await laptop.until(of_type("message.completed"))
    replies = await replies_of()
    assert [m.state for m in replies] == [
        MessageState.COMPLETE,
        MessageState.CANCELLED,
        MessageState.COMPLETE,
    ]
    assert 0 < len(replies[1].content) < len(PLAN) and replies[2].content == PLAN
    await a_new_device_sees_the_same_log(servers, session, store, laptop.last_seq)
    for device in (laptop, phone):
        await device.ws.close()


def active_of(device: Device) -> dict[int, bool]:
    """The shown/hidden state of each message as a device assembles it from the log."""
    active: dict[int, bool] = {}
    for frame in log_of(device.frames):
        if frame["type"] == "message.created":
            active[frame["data"]["message"]["id"]] = frame["data"]["message"]["active"]
        elif frame["type"] == "branch.switched":
            active.update(dict.fromkeys(frame["data"]["hidden"], False))
            active.update(dict.fromkeys(frame["data"]["shown"], True))
    return active


@db
def shown_now() -> dict[int, bool]:
    return {m.pk: m.hidden_under_id is None for m in Message.objects.all()}


async def test_an_edit_and_a_switch_on_one_device_show_on_another_across_servers(
    daphne, agent_worker, postgres, redis_url
):
    env = server_env(
        redis_url=redis_url,
        ds_settings={
            "RUNNER": "worker",
            "RUN_SWEEP_INTERVAL": 0.3,
            "AGENT_OPTIONS": {"thinking_seconds": 0.1, "tokens_per_second": 0, "seed": 1},
        },
    )
    servers = [daphne(env), daphne(env)]
    agent_worker(env, "alpha")
    session, store = await db(anonymous_session)()
    laptop = Device(servers, session, store)
    await laptop.open()
    phone = Device(list(reversed(servers)), session, store)
    await phone.open()

    await laptop.ws.send(send("Where is my order?", "c1"))
    await laptop.until(of_type("message.completed"))
    question = next(
        f["data"]["message"]["id"]
        for f in log_of(laptop.frames)
        if f["type"] == "message.created" and f["data"]["message"]["role"] == "user"
    )
    edit = {"type": "message.edit", "message_id": question, "content": "Forgot my password"}
    await laptop.ws.send(json.dumps({**edit, "client_id": "e1"}))
    await laptop.until(of_type("message.completed"))
    await phone.until(of_type("message.completed"))
    await phone.until(of_type("message.completed"))
    replies = await replies_of()
    assert replies[0].hidden_under_id is not None and replies[1].hidden_under_id is None
    assert replies[1].content == REPLIES["password"]  # it answered the shown branch only
    # Back to the first version, from the phone; the laptop follows, then reloads.
    await phone.ws.send(json.dumps({"type": "branch.switch", "message_id": question}))
    for device in (laptop, phone):
        await device.until(lambda f: f.get("type") == "branch.switched" and f["data"]["shown"])
    await laptop.reload()
    now = await shown_now()
    for device in (laptop, phone):
        assert active_of(device) == now
        seqs = [f["seq"] for f in log_of(device.frames)]
        assert seqs == sorted(set(seqs))
    assert now[question] and now[replies[0].pk] and not now[replies[1].pk]
    await a_new_device_sees_the_same_log(servers, session, store, laptop.last_seq)
    for device in (laptop, phone):
        await device.ws.close()
