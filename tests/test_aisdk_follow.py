"""The AI SDK answer stream follows the log: the frames its wake-ups carry, exactly once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.db import database_sync_to_async

from durable_sessions import service
from durable_sessions.aisdk import follow as follow_module
from durable_sessions.aisdk.chunks import AnswerChunks
from durable_sessions.aisdk.follow import DONE, continuing, follow
from durable_sessions.delivery.resync import registry
from tests.factories import anonymous_session, stream_text
from tests.lossy_layer import use_lossy_layer

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async


def chunks_of(body: bytes) -> list[dict[str, Any]]:
    return [
        json.loads(line[len(b"data: ") :])
        for line in body.split(b"\n\n")
        if line.startswith(b"data: {")
    ]


def text_of(body: bytes) -> str:
    return "".join(c["delta"] for c in chunks_of(body) if c["type"] == "text-delta")


async def _answer() -> tuple[Any, Any]:
    session, _ = await db(anonymous_session)()
    reply = await service.astart_assistant_message(session.id)
    return session, reply


def _counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the log reads of the answer stream."""
    reads: list[int] = []
    real = follow_module.aread_page

    async def counted(session_id: Any, after: int) -> Any:
        reads.append(after)
        return await real(session_id, after)

    monkeypatch.setattr(follow_module, "aread_page", counted)
    return reads


async def _next(body: AsyncIterator[bytes]) -> bytes:
    return await asyncio.wait_for(anext(body), 10)


async def test_a_streaming_answer_is_fed_from_its_wakeups_without_reading_the_log(
    ds_config, monkeypatch
):
    ds_config(RESYNC_INTERVAL=60)  # no periodic read while the test runs
    reads = _counting_reads(monkeypatch)
    session, reply = await _answer()
    body = follow(session.id, reply.seq - 1, AnswerChunks(session_id=str(session.id)))
    assert [c["type"] for c in chunks_of(await _next(body))] == ["start"]
    words = [f"w{i} " for i in range(12)]
    for word in words:
        await stream_text(reply, word)
        got = await _next(body)
        assert text_of(got) == word
    await service.afinish_assistant_message(reply.pk)
    end = await _next(body)
    assert end.endswith(DONE) and chunks_of(end)[-1]["type"] == "finish"
    assert reads == [reply.seq - 1]  # the first read only: every delta came with its wake-up


async def test_a_lost_wakeup_is_read_from_the_log_and_nothing_is_doubled(settings):
    use_lossy_layer(settings, drop=0.5)
    session, reply = await _answer()
    words = [f"w{i} " for i in range(40)]

    async def read_all() -> bytes:
        body = b""
        async for part in follow(
            session.id, reply.seq - 1, AnswerChunks(session_id=str(session.id))
        ):
            body += part
        return body

    reader = asyncio.ensure_future(read_all())
    for word in words:
        await stream_text(reply, word)
        await asyncio.sleep(0)
    await service.afinish_assistant_message(reply.pk)
    body = await asyncio.wait_for(reader, 20)
    assert text_of(body) == "".join(words)
    assert body.endswith(DONE)


async def test_a_waiting_answer_stream_leaves_the_missed_wakeup_check_to_the_process(
    ds_config, monkeypatch, settings
):
    """No read of its own every interval: the per-process check (one query for every
    follower) finds a lost wake-up, and only then does the stream read the log."""
    use_lossy_layer(settings, drop=1.0)  # every wake-up lost
    ds_config(RESYNC_INTERVAL=0.05)
    reads = _counting_reads(monkeypatch)
    session, reply = await _answer()
    body = follow(session.id, reply.seq - 1, AnswerChunks(session_id=str(session.id)))
    assert [c["type"] for c in chunks_of(await _next(body))] == ["start"]
    pending = asyncio.ensure_future(_next(body))
    await asyncio.sleep(0.5)  # ten intervals with nothing written
    assert reads == [reply.seq - 1]
    await stream_text(reply, "found ")
    assert text_of(await pending) == "found "  # read once the check saw it missing
    assert len(reads) == 2
    await body.aclose()
    assert len(registry) == 0  # the closed response left the check


def test_only_frames_that_continue_the_last_seq_read_are_used():
    def message(*seqs: int) -> dict[str, Any]:
        return {"type": "session.events", "events": [{"seq": s} for s in seqs]}

    assert continuing(None, 4) is None  # no wake-up (the resync interval): read
    assert continuing(message(5, 6), 4) == [{"seq": 5}, {"seq": 6}]
    assert continuing(message(3, 4, 5), 4) == [{"seq": 5}]  # already read: skipped
    assert continuing(message(3, 4), 4) == []
    assert continuing(message(6), 4) is None  # seq 5 was lost: read the log
    assert continuing(message(5, 7), 4) is None
