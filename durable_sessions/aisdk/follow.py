"""Follow one answer in the session's log and send it as an SSE UI message stream.

Like the other HTTP readers, the response joins the session's channel-layer group before
its first read, reads the log from the database in bounded pages and, when it has read
everything, awaits a wake-up (or the resync interval) without holding a thread or a
connection. Once its answer is known, the committed frames a wake-up carries that continue
exactly from the last seq read are fed as they are, like a websocket sends them: a
streaming answer costs no database read per delta (a thousand followers would queue
behind one database thread). A gap reads the database; so does a wake-up lost with no
event after it, found by the per-process check that websockets share (one query for all of
them every ``RESYNC_INTERVAL``, rather than a read per response).

The answer ends with ``finish`` when its message ends, when its run waits for an
approval, or at once when there is no answer to wait for; a response that has been open
for ``AISDK_STREAM_MAX_SECONDS`` ends without ``finish`` and the client resumes.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from channels.db import database_sync_to_async

from durable_sessions.aisdk.chunks import AnswerChunks, Chunk
from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.groups import session_group
from durable_sessions.delivery.publish import LIVE_MESSAGE_TYPE
from durable_sessions.delivery.replay import read_events_page
from durable_sessions.delivery.resync import registry
from durable_sessions.delivery.stream_wakeups import GroupWaiter
from durable_sessions.models import (
    AgentRun,
    DurableSession,
    Message,
    MessageState,
    Role,
    RunStatus,
)

DONE = b"data: [DONE]\n\n"
# One encoder for every chunk (``json.dumps`` with arguments builds a new one per call).
_encode = json.JSONEncoder(separators=(",", ":")).encode


def sse(chunk: Chunk) -> bytes:
    return b"data: " + _encode(chunk).encode() + b"\n\n"


def sse_all(chunks: list[Chunk]) -> bytes:
    """Several chunks as one write: the same bytes as ``sse`` of each, joined."""
    if not chunks:
        return b""
    return ("data: " + "\n\ndata: ".join(map(_encode, chunks)) + "\n\n").encode()


def answer_active(session_id: uuid.UUID) -> bool:
    """Whether an answer is under way: a streaming reply (also one waiting for an
    approval), or a run that has not written its reply yet. Cleared in the unit that ends
    the reply, so a reader that saw the end finds nothing active."""
    if Message.objects.filter(
        session_id=session_id, role=Role.ASSISTANT, state=MessageState.STREAMING
    ).exists():
        return True
    return AgentRun.objects.filter(
        session_id=session_id,
        status__in=(RunStatus.PENDING, RunStatus.RUNNING),
        message__isnull=True,
    ).exists()


def active_answer_start(session_id: uuid.UUID) -> int | None:
    """The seq to read after to replay the active answer from its start, or None."""
    last_seq = (
        DurableSession.objects.filter(pk=session_id).values_list("last_seq", flat=True).first()
    )
    reply = (
        Message.objects.filter(
            session_id=session_id, role=Role.ASSISTANT, state=MessageState.STREAMING
        )
        .values_list("seq", flat=True)
        .first()
    )
    if reply is not None:
        return reply - 1
    if answer_active(session_id):
        return last_seq or 0  # read before the check: the reply it waits for comes after
    return None


def run_waits(session_id: uuid.UUID) -> bool:
    return AgentRun.objects.filter(session_id=session_id, status=RunStatus.AWAITING).exists()


def read_page(session_id: uuid.UUID, after: int) -> tuple[bool, list[dict[str, Any]], bool]:
    """Whether an answer was active before the read, the events after ``after``, and
    whether more follow. Checked first: what the answer wrote before it ended is in the
    read that follows."""
    active = answer_active(session_id)
    frames, more = read_events_page(
        session_id,
        after,
        limit=ds_settings.REPLAY_PAGE_SIZE,
        max_chars=ds_settings.REPLAY_PAGE_BYTES,
    )
    return active, frames, more


aread_page = database_sync_to_async(read_page)
arun_waits = database_sync_to_async(run_waits)


def continuing(message: dict[str, Any] | None, after: int) -> list[dict[str, Any]] | None:
    """The frames of a wake-up ``message`` that come after ``after``, when they continue
    from it without a gap (an empty list when it brings nothing new); None when the log
    must be read instead (no message, or a gap: the layer lost one)."""
    if message is None:
        return None
    frames = [f for f in message.get("events", ()) if f.get("seq", 0) > after]
    for expected, frame in enumerate(frames, start=after + 1):
        if frame["seq"] != expected:
            return None
    return frames


class _Reader:
    """A response following its answer, as the per-process resync check sees it."""

    def __init__(self, waiter: GroupWaiter, after: int) -> None:
        self.waiter = waiter
        self.last_sent = after

    async def resync(self, last_seq: int) -> None:
        self.waiter.poke()  # it lacks what was committed an interval ago: read the log


async def follow(
    session_id: uuid.UUID, after: int, chunks: AnswerChunks, opening: list[Chunk] | None = None
) -> AsyncIterator[bytes]:
    """The SSE body: ``opening`` chunks, then the answer's chunks from the log after
    ``after``, then ``[DONE]``."""
    if opening:
        yield sse_all(opening)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ds_settings.AISDK_STREAM_MAX_SECONDS
    waiter = GroupWaiter(session_group(session_id), lambda m: m.get("type") == LIVE_MESSAGE_TYPE)
    reader = _Reader(waiter, after)
    registered = False
    live: list[dict[str, Any]] | None = None
    try:
        async with waiter:
            while True:
                if live is None:
                    active, frames, more = await aread_page(session_id, after)
                else:  # the answer is known: whether another is active does not matter
                    active, frames, more = True, live, False
                # A page's chunks go out as one write: a response write per chunk (an ASGI
                # message, a socket send) cost more than building the chunks.
                page: list[Chunk] = []
                for frame in frames:
                    after = frame["seq"]
                    page += chunks.feed(frame)
                    if chunks.finished:
                        yield sse_all(page) + DONE
                        return
                if page:
                    yield sse_all(page)
                if more:
                    continue
                if chunks.awaiting_approval and await arun_waits(session_id):
                    yield sse_all(chunks.finish("awaiting-approval")) + DONE
                    return
                if chunks.reply_id is None and not active:
                    # No answer comes (a human has control, or the run ended without one).
                    yield sse_all(chunks.finish("idle")) + DONE
                    return
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return  # the client resumes through GET chat/<id>/stream
                reader.last_sent = after
                if chunks.reply_id is not None and not registered:
                    # From now on a missed wake-up is the per-process check's to find.
                    registry.add(session_id, reader)
                    registered = True
                woken = await waiter.wait(remaining, resync=not registered)
                live = continuing(woken, after) if chunks.reply_id is not None else None
    finally:
        if registered:
            registry.remove(session_id, reader)
