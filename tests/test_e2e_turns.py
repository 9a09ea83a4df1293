"""Typed turns with real processes on PostgreSQL and Redis: two Daphne servers and two
worker processes. Reasoning, a tool call and its answer, then an approval; at every stage a
reload (resume on the other server) and a device switch (a new device from seq 0); the
approval answered from the second device and continued by the other worker process."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async

from durable_sessions.models import Event, Message, MessagePart, RunStatus
from tests.factories import anonymous_session
from tests.live import server_env
from tests.test_e2e_runtime import connect, of_type, read_until
from tests.test_turns import count, latest_run

db = database_sync_to_async

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.timeout(120)]


def log_of(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if "at" in f and "seq" in f]


class Device:
    """One customer connection that follows the log across reconnects."""

    def __init__(self, servers: list[Any], session: Any, store: Any) -> None:
        self.servers = servers
        self.session = session
        self.store = store
        self.frames: list[dict[str, Any]] = []
        self.ws: Any = None
        self.turn = 0

    @property
    def last_seq(self) -> int:
        log = log_of(self.frames)
        return log[-1]["seq"] if log else 0

    async def open(self) -> None:
        server = self.servers[self.turn % len(self.servers)]
        self.turn += 1
        self.ws = await connect(server, self.session, self.store, after_seq=self.last_seq)
        self.frames += await read_until(self.ws, of_type("live"))

    async def reload(self) -> None:
        """Drop the connection and resume after the last seq, on the other server."""
        await self.ws.close()
        await self.open()

    async def until(self, predicate) -> list[dict[str, Any]]:
        got = await read_until(self.ws, predicate)
        self.frames += got
        return got


async def a_new_device_sees_the_same_log(servers, session, store, upto: int) -> None:
    """A device that starts from nothing gets 1 … now, each once, in order."""
    for server in servers:
        ws = await connect(server, session, store)
        frames = await read_until(ws, of_type("live"))
        seqs = [f["seq"] for f in log_of(frames)]
        assert seqs == list(range(1, len(seqs) + 1)) and seqs[-1] >= upto
        await ws.close()


def is_tool(state: str):
    return lambda f: f.get("type") == "tool.updated" and f["data"]["state"] == state


async def test_reasoning_a_tool_and_an_approval_survive_reloads_and_device_switches(
    daphne, agent_worker, postgres, redis_url
):
    env = server_env(
        redis_url=redis_url,
        ds_settings={
            "RUNNER": "worker",
            "RUN_SWEEP_INTERVAL": 0.3,
            "FLUSH_INTERVAL_MS": 30,
            "AGENT_OPTIONS": {"thinking_seconds": 0.2, "tokens_per_second": 25, "seed": 3},
        },
    )
    servers = [daphne(env), daphne(env)]
    workers = {name: agent_worker(env, name) for name in ("alpha", "beta")}
    session, store = await database_sync_to_async(anonymous_session)()
    laptop = Device(servers, session, store)
    await laptop.open()

    # Reasoning, then a tool call, then the answer: a reload and a new device at each stage.
    await laptop.ws.send(
        json.dumps({"type": "message.send", "content": "Where is order 1002?", "client_id": "c1"})
    )
    stages = [of_type("part.delta"), is_tool("running"), of_type("message.delta")]
    for stage in stages:
        await laptop.until(stage)
        await laptop.reload()
        await a_new_device_sees_the_same_log(servers, session, store, laptop.last_seq)
    await laptop.until(of_type("message.completed"))

    # An action that needs approval: the run is suspended, holding no worker.
    await laptop.ws.send(
        json.dumps({"type": "message.send", "content": "Refund order 1001", "client_id": "c2"})
    )
    await laptop.until(of_type("part.delta"))
    await laptop.reload()
    waiting = await laptop.until(is_tool("awaiting-approval"))
    approval_id = waiting[-1]["data"]["approval"]["id"]
    await laptop.reload()
    for _ in range(100):
        run = await latest_run()
        if run.status == RunStatus.AWAITING:
            break
        await asyncio.sleep(0.1)
    assert run.status == RunStatus.AWAITING
    suspended_by = run.worker
    workers[suspended_by].stop()  # the other worker process must continue it

    # The phone: a new device, which sees the pending approval at once and answers it.
    phone = Device(list(reversed(servers)), session, store)
    await phone.open()
    snapshot = next(f for f in phone.frames if f["type"] == "snapshot")
    assert snapshot["agent"]["status"] == "awaiting_approval"
    assert [a["part"]["id"] for a in snapshot["approvals"]] == [approval_id]
    answer = {"type": "approval.answer", "approval_id": approval_id, "approved": True}
    await phone.ws.send(json.dumps({**answer, "client_id": "phone-1"}))
    ack = await phone.until(of_type("ack"))
    assert ack[-1]["decision"] == "approved"
    await laptop.ws.send(json.dumps({**answer, "approved": False, "client_id": "laptop-1"}))
    refused = await laptop.until(of_type("error"))
    assert refused[-1]["code"] == "already_answered"

    # Continued as the same reply, by the other worker; both devices get all of it.
    await laptop.until(is_tool("running"))
    await laptop.reload()
    for device in (laptop, phone):
        await device.until(of_type("message.completed"))
    # The run is marked finished just after its reply completes (its own write).
    for _ in range(100):
        run = await latest_run()
        if run.status == RunStatus.COMPLETED:
            break
        await asyncio.sleep(0.1)
    assert run.status == RunStatus.COMPLETED and run.worker != suspended_by

    # Nothing lost, nothing doubled: the laptop's log across reloads is 1 … N exactly once,
    # and what it assembled equals what is stored.
    seqs = [f["seq"] for f in log_of(laptop.frames)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert seqs[-1] == await count(Event, session=session)
    replies = await db(lambda: list(Message.objects.filter(role="assistant").order_by("seq")))()
    assert len(replies) == 2
    for reply in replies:
        texts = [
            f["data"]["text"]
            for f in log_of(laptop.frames)
            if f["type"] == "message.delta" and f["data"]["message_id"] == reply.pk
        ]
        assert "".join(texts) == reply.content and reply.state == "complete"
        parts = await db(lambda r=reply: list(r.parts.order_by("index")))()
        assert [(p.type, p.state) for p in parts] == [
            ("reasoning", "done"),
            ("tool_call", "done"),
            ("text", "done"),
        ]
    refund = await db(lambda: list(MessagePart.objects.filter(tool_name="refund_order")))()
    assert len(refund) == 1 and refund[0].output["refunded"] == 89.9  # run once
    await a_new_device_sees_the_same_log(servers, session, store, seqs[-1])
    for device in (laptop, phone):
        await device.ws.close()
