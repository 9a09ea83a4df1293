"""GET on a stream: catch-up, long-poll and SSE, for generic streams and sessions alike.

A :class:`Source` says how to read one stream; this module speaks the protocol. Waiting
never holds a thread or a database connection: each read is a short call on the database
thread, and in between the request awaits a channel-layer wake-up
(:class:`~durable_sessions.delivery.stream_wakeups.GroupWaiter`), joined before the first
read so that no append can slip between a read and the wait.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.stream_reads import Chunk, Tail
from durable_sessions.delivery.stream_wakeups import GroupWaiter
from durable_sessions.stream_offsets import NOW, START, format_offset, parse_offset
from durable_sessions.streams import protocol as p

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class Source(Protocol):
    """One readable stream, as the read modes need it."""

    etag_id: str
    content_type: str
    is_json: bool
    tail: Tail
    # Of a chunk of data (its bytes never change at that offset).
    cache_control: str

    async def read(self, after: int) -> Chunk: ...

    def waiter(self) -> GroupWaiter: ...

    def slot(self) -> AbstractAsyncContextManager[HttpResponse | None]:
        """Held while the request waits: the refusal when the caller waits too often."""
        ...


def body_of(source: Source, entries: list[tuple[int, int, bytes]]) -> bytes:
    if source.is_json:
        return b"[" + b",".join(data for _, _, data in entries) + b"]"
    return b"".join(data for _, _, data in entries)


def parse_read(request: HttpRequest) -> tuple[str, str | None, str | None] | HttpResponse:
    """``(offset, live, cursor)`` of a GET, or the 400 that refuses it."""
    offsets = request.GET.getlist("offset")
    if len(offsets) > 1:
        return p.plain(400, "give one offset")
    offset = offsets[0] if offsets else None
    if offset == "":
        return p.plain(400, "the offset is empty")
    live = request.GET.get("live")
    if live is not None and live not in ("long-poll", "sse"):
        return p.plain(400, "live is 'long-poll' or 'sse'")
    if live is not None and offset is None:
        return p.plain(400, f"{live} needs an offset")
    offset = offset or START
    if offset not in (START, NOW) and parse_offset(offset) is None:
        return p.plain(400, "not an offset of this stream")
    return offset, live, request.GET.get("cursor")


def start_seq(offset: str, tail: Tail) -> int:
    if offset == START:
        return 0
    if offset == NOW:
        return tail.seq
    parsed = parse_offset(offset)
    assert parsed is not None
    return parsed[0]


async def read(request: HttpRequest, source: Source) -> HttpResponse:
    parsed = parse_read(request)
    if isinstance(parsed, HttpResponse):
        return parsed
    offset, live, cursor = parsed
    if live == "sse":
        return sse(source, offset, cursor)
    tail = source.tail
    if offset == NOW and live is None:
        response = HttpResponse(b"[]" if source.is_json else b"", content_type=source.content_type)
        response[p.NEXT_OFFSET] = tail.offset
        response[p.UP_TO_DATE] = "true"
        response["Cache-Control"] = p.NO_STORE
        if tail.closed:
            response[p.CLOSED] = "true"
        return p.decorate(response)
    after = start_seq(offset, tail)
    if live == "long-poll":
        return await long_poll(source, offset, after, cursor)
    chunk = await source.read(after)
    return chunk_response(
        source,
        offset,
        chunk,
        live=False,
        cursor=cursor,
        if_none_match=request.headers.get("If-None-Match"),
    )


def chunk_response(
    source: Source,
    offset: str,
    chunk: Chunk,
    *,
    live: bool,
    cursor: str | None,
    if_none_match: str | None = None,
) -> HttpResponse:
    entries, tail = chunk.entries, chunk.tail
    next_offset = format_offset(entries[-1][0], entries[-1][1]) if entries else tail.offset
    at_tail = not chunk.more and (not entries or entries[-1][0] >= tail.seq)
    closed = tail.closed and at_tail
    etag = f'"{source.etag_id}:{offset}:{next_offset}{":c" if closed else ""}"'
    if if_none_match == etag:
        response = HttpResponse(status=304)
        response["ETag"] = etag
        return p.decorate(response)
    response = HttpResponse(body_of(source, entries), content_type=source.content_type)
    response[p.NEXT_OFFSET] = next_offset
    response["ETag"] = etag
    response["Cache-Control"] = source.cache_control if entries else p.NO_STORE
    if not chunk.more:
        response[p.UP_TO_DATE] = "true"
    if closed:
        response[p.CLOSED] = "true"
    if live:
        response[p.CURSOR] = p.response_cursor(cursor)
    return p.decorate(response)


def _no_content(tail: Tail, offset: str, cursor: str | None) -> HttpResponse:
    response = HttpResponse(status=204)
    response[p.NEXT_OFFSET] = offset
    response[p.UP_TO_DATE] = "true"
    response["Cache-Control"] = p.NO_STORE
    if tail.closed:
        response[p.CLOSED] = "true"
    else:
        response[p.CURSOR] = p.response_cursor(cursor)
    return p.decorate(response)


async def long_poll(source: Source, offset: str, after: int, cursor: str | None) -> HttpResponse:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ds_settings.STREAMS_LONG_POLL_TIMEOUT
    async with source.slot() as refused, source.waiter() as waiter:
        if refused is not None:
            return refused
        while True:
            chunk = await source.read(after)
            if chunk.tail.gone:
                return p.plain(404, "the stream was deleted")
            if chunk.entries:
                return chunk_response(source, offset, chunk, live=True, cursor=cursor)
            tail_offset = chunk.tail.offset if after >= chunk.tail.seq else offset
            if chunk.tail.closed:
                return _no_content(chunk.tail, tail_offset, cursor)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return _no_content(chunk.tail, tail_offset, cursor)
            await waiter.wait(remaining)


def sse_event(kind: str, payload: str) -> bytes:
    lines = "\n".join(f"data:{line}" for line in _LINE_BREAK.split(payload))
    return f"event: {kind}\n{lines}\n\n".encode()


def sse(source: Source, offset: str, cursor: str | None) -> StreamingHttpResponse:
    binary = not (source.is_json or source.content_type.lower().startswith("text/"))
    response = StreamingHttpResponse(
        _sse_events(source, offset, cursor, binary), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must pass events on at once
    if binary:
        response[p.SSE_ENCODING] = "base64"
    return p.decorate(response)


def _data_payload(source: Source, entries: list[tuple[int, int, bytes]], binary: bool) -> str:
    raw = body_of(source, entries)
    if binary:
        return base64.b64encode(raw).decode("ascii")
    return raw.decode("utf-8", errors="replace")


async def _sse_events(
    source: Source, offset: str, cursor: str | None, binary: bool
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ds_settings.STREAMS_SSE_MAX_SECONDS
    after = start_seq(offset, source.tail)
    first = True
    async with source.slot() as refused, source.waiter() as waiter:
        while refused is None:
            chunk = await source.read(after)
            if chunk.tail.gone:
                return
            entries, tail = chunk.entries, chunk.tail
            if entries:
                yield sse_event("data", _data_payload(source, entries, binary))
                after = entries[-1][0]
                next_offset = format_offset(entries[-1][0], entries[-1][1])
            else:
                next_offset = tail.offset if after >= tail.seq else offset
            at_tail = not chunk.more and after >= tail.seq
            if entries or first or (tail.closed and at_tail):
                control: dict[str, Any] = {"streamNextOffset": next_offset}
                if tail.closed and at_tail:
                    control.update(streamClosed=True, upToDate=True)
                else:
                    control["streamCursor"] = p.response_cursor(cursor)
                    if at_tail:
                        control["upToDate"] = True
                yield sse_event("control", json.dumps(control))
            first = False
            if tail.closed and at_tail:
                return
            if chunk.more:
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await waiter.wait(remaining)
