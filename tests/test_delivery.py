"""Exact delivery: gapless seq under concurrency, resume from anywhere, a lossy layer."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import close_old_connections

from durable_sessions import service
from durable_sessions.models import Event, Message, ParticipantKind
from tests.factories import anonymous_session, nothing_more, open_ws, recv, stream_text
from tests.lossy_layer import use_lossy_layer

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async


def _concurrent_posts(session, writers: int, each: int) -> None:
    customer = service.participant_for(session.id, ParticipantKind.CUSTOMER)
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            barrier.wait()
            for i in range(each):
                service.post_message(
                    session.id, author=customer, content=f"{n}-{i}", client_id=f"{n}-{i}"
                )
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def _assert_gapless(session, total: int) -> None:
    seqs = list(Event.objects.filter(session=session).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, total + 1))
    session.refresh_from_db()
    assert session.last_seq == total
    assert Message.objects.filter(session=session).count() == total - 1


def test_concurrent_writers_get_gapless_seqs_on_postgres(postgres):
    session, _ = anonymous_session()
    _concurrent_posts(session, writers=8, each=25)
    _assert_gapless(session, 1 + 8 * 25)


def test_concurrent_writers_get_gapless_seqs_on_the_configured_database():
    session, _ = anonymous_session()
    _concurrent_posts(session, writers=4, each=10)
    _assert_gapless(session, 1 + 4 * 10)


async def _stream(session, chunks: list[str]) -> None:
    reply = await service.astart_assistant_message(session.id)
    for chunk in chunks:
        await stream_text(reply, chunk)
    await service.afinish_assistant_message(reply)


def _text(frames) -> str:
    return "".join(f["data"]["text"] for f in frames if f.get("type") == "message.delta")


async def _read_until(comm, last_seq: int, into: list) -> None:
    while not into or into[-1].get("seq", 0) < last_seq:
        frame = await recv(comm)
        if "seq" in frame:
            into.append(frame)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_client_that_drops_anywhere_resumes_exactly(seed):
    rng = random.Random(seed)
    session, store = await db(anonymous_session)()
    chunks = [f"tok{i} " for i in range(60)]
    steady, _ = await open_ws(session.id, store=store)
    flaky, first = await open_ws(session.id, store=store)
    writer = asyncio.create_task(_stream(session, chunks))
    drop_at = rng.randint(3, 50)
    flaky_frames = [f for f in first if "seq" in f]
    while not flaky_frames or flaky_frames[-1]["seq"] < drop_at:
        frame = await recv(flaky)
        if "seq" in frame:
            flaky_frames.append(frame)
    await flaky.disconnect()
    await asyncio.sleep(rng.random() * 0.05)
    again, replayed = await open_ws(session.id, store=store, after_seq=flaky_frames[-1]["seq"])
    flaky_frames += [f for f in replayed if "seq" in f]
    await writer
    final = 1 + 1 + len(chunks) + 1
    await _read_until(again, final, flaky_frames)
    steady_frames: list = []
    await _read_until(steady, final, steady_frames)
    assert [f["seq"] for f in flaky_frames] == list(range(1, final + 1))
    assert _text(flaky_frames) == _text(steady_frames) == "".join(chunks)
    for comm in (steady, again):
        assert await nothing_more(comm, 0.2)
        await comm.disconnect()


async def test_every_client_gets_every_event_when_the_layer_drops_messages(settings):
    use_lossy_layer(settings, drop=0.5)
    session, store = await db(anonymous_session)()
    clients = [(await open_ws(session.id, store=store))[0] for _ in range(3)]
    chunks = [f"w{i} " for i in range(40)]
    await _stream(session, chunks)
    final = 1 + 1 + len(chunks) + 1
    for comm in clients:
        frames: list = []
        await _read_until(comm, final, frames)
        assert [f["seq"] for f in frames] == list(range(2, final + 1))
        assert _text(frames) == "".join(chunks)
        await comm.disconnect()
    assert get_channel_layer().dropped > 0


async def test_a_dropped_last_event_arrives_through_the_periodic_resync(settings):
    use_lossy_layer(settings, drop=1.0)
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    customer = await db(service.participant_for)(session.id, ParticipantKind.CUSTOMER)
    await service.apost_message(session.id, author=customer, content="only one", client_id="1")
    frame = await recv(comm)  # RESYNC_INTERVAL is 0.2 s in tests
    assert (frame["seq"], frame["type"]) == (2, "message.created")
    await comm.disconnect()
