"""Replay from the database: the wire text the database writes, and ``events`` frames."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from channels.db import database_sync_to_async

from durable_sessions import consumers, service
from durable_sessions.delivery.replay import read_events, read_wire
from durable_sessions.models import Event
from tests.factories import (
    anonymous_session,
    close,
    communicator,
    nothing_more,
    open_ws,
    recv,
    stream_text,
)
from tests.lossy_layer import use_lossy_layer

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async


async def streamed(chunks: list[str]):
    session, store = await db(anonymous_session)()
    reply = await service.astart_assistant_message(session.id)
    for chunk in chunks:
        await stream_text(reply, chunk)
    await service.afinish_assistant_message(reply)
    return session, store


async def test_the_wire_text_parses_to_the_frames_read_events_builds():
    session, _ = await streamed(['quotes " and \\ back', "ünï — 𝄞 \n\t", "<b>x</b>", "plain"])
    # A time with no fraction of a second still carries six digits, as the database writes it.
    await Event.objects.filter(session_id=session.id, seq=1).aupdate(
        created_at=dt.datetime(2026, 11, 26, 9, 0, 0, tzinfo=dt.UTC)
    )
    frames = await db(read_events)(session.id, 0)
    wire = await db(read_wire)(session.id, 0)
    assert [seq for seq, _ in wire] == [f["seq"] for f in frames] == list(range(1, 8))
    assert [json.loads(text) for _, text in wire] == frames
    assert frames[0]["at"] == "2026-11-26T09:00:00.000000Z"
    assert await db(read_wire)(session.id, 2, until=4, limit=10) == wire[2:4]
    assert await db(read_wire)(session.id, 0, limit=3) == wire[:3]


async def test_a_batched_replay_comes_in_events_frames_of_consecutive_seqs(ds_config, monkeypatch):
    ds_config(REPLAY_PAGE_SIZE=4)
    monkeypatch.setattr(consumers, "BATCH_MAX_CHARS", 300)  # a page splits into frames too
    session, store = await streamed([f"chunk {i} " + "x" * 60 for i in range(12)])
    comm, frames = await open_ws(session.id, store=store, after_seq=1, batch=True)
    assert frames[0]["type"] == "snapshot" and frames[-1] == {"type": "live", "last_seq": 15}
    batches = frames[1:-1]
    assert {f["type"] for f in batches} == {"events"}
    assert all(1 <= len(f["events"]) <= 4 for f in batches) and len(batches) > 15 // 4
    events = [e for f in batches for e in f["events"]]
    assert [e["seq"] for e in events] == list(range(2, 16))
    assert events == await db(read_events)(session.id, 1)
    assert await nothing_more(comm, 0.2)
    await comm.disconnect()


async def test_live_events_stay_single_frames_after_a_batched_replay():
    session, store = await streamed(["a", "b"])
    comm, frames = await open_ws(session.id, store=store, batch=True)
    assert [e["seq"] for e in frames[1]["events"]] == [1, 2, 3, 4, 5]
    await close(session)
    frame = await recv(comm)
    assert (frame["type"], frame["seq"]) == ("session.closed", 6)
    await comm.disconnect()


async def test_a_gap_left_by_the_layer_is_reread_as_an_events_frame(settings):
    use_lossy_layer(settings, drop=0.5)
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store, batch=True)
    reply = await service.astart_assistant_message(session.id)
    for i in range(30):
        await stream_text(reply, f"w{i} ")
    seen: list[int] = []
    kinds = set()
    while len(seen) < 31:
        frame = await recv(comm)
        kinds.add(frame["type"])
        seen += [e["seq"] for e in frame["events"]] if frame["type"] == "events" else [frame["seq"]]
    assert seen == list(range(2, 33))
    assert "events" in kinds
    await comm.disconnect()


@pytest.mark.parametrize("query", ["after_seq=0&batch=2", "batch=yes", "batch=1&batch=true"])
async def test_a_bad_batch_parameter_is_refused(query):
    session, store = await db(anonymous_session)()
    comm = communicator(session.id, store=store)
    comm.scope["query_string"] = query.encode()
    connected, _ = await comm.connect()
    assert connected
    assert (await comm.receive_output(timeout=5))["code"] == 4400
    await comm.disconnect()
