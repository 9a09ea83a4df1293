"""Generic Durable Streams: PUT, POST, GET, HEAD, DELETE and OPTIONS on one URL.

Parsing and access only; every write goes through the service's stream modules.
"""

from __future__ import annotations

import re
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from django.http import HttpRequest, HttpResponse
from django.utils.dateparse import parse_datetime

from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.publish import make_async
from durable_sessions.delivery.stream_reads import Chunk, Tail, read_chunk
from durable_sessions.delivery.stream_wakeups import STREAM_MESSAGE_TYPE, GroupWaiter, stream_group
from durable_sessions.errors import StreamBadRequest, StreamError, StreamTooLarge
from durable_sessions.service import stream_create, stream_log
from durable_sessions.service.stream_log import Producer, StreamState
from durable_sessions.streams import access
from durable_sessions.streams import protocol as p
from durable_sessions.streams.reading import read

_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_CONTENT_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_PATH = 1024
MAX_TEXT = 255
MAX_SAFE_INTEGER = 2**53 - 1

acreate = make_async(stream_create.create)
aappend = stream_log.aappend
adelete = make_async(stream_log.delete)
astream_for_read = database_sync_to_async(stream_log.stream_for_read)
astream_for_head = database_sync_to_async(stream_log.stream_for_head)
aread_chunk = database_sync_to_async(read_chunk)
aidentify = database_sync_to_async(access.identify)


class GenericSource:
    """A generic stream as :mod:`durable_sessions.streams.reading` reads it."""

    cache_control = p.CACHE_CHUNK

    def __init__(self, state: StreamState) -> None:
        self.state = state
        self.etag_id = f"s{state.id}"
        self.content_type = state.content_type
        self.is_json = state.is_json
        self.tail = Tail(state.tail_seq, state.tail_bytes, state.closed)

    async def read(self, after: int) -> Chunk:
        return await aread_chunk(self.state.id, after, ds_settings.STREAMS_READ_BYTES)

    def waiter(self) -> GroupWaiter:
        return GroupWaiter(
            stream_group(self.state.id), lambda m: m.get("type") == STREAM_MESSAGE_TYPE
        )

    def slot(self) -> AbstractAsyncContextManager[HttpResponse | None]:
        return nullcontext(None)  # callers are staff or trusted (STREAMS_ACCESS)


def read_body(request: HttpRequest) -> bytes:
    limit = ds_settings.STREAMS_MAX_APPEND_BYTES
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        raise StreamBadRequest("Content-Length is not a number") from None
    if declared > limit:
        raise StreamTooLarge(f"the body is larger than {limit} bytes")
    body = request.read(limit + 1)
    if len(body) > limit:
        raise StreamTooLarge(f"the body is larger than {limit} bytes")
    return body


def stream_path(request: HttpRequest, raw: str) -> str:
    # Counted in UTF-8 bytes: the path is a unique index key (PostgreSQL caps its size).
    if not raw or len(raw.encode("utf-8", "surrogatepass")) > MAX_PATH:
        raise StreamBadRequest(f"a stream path has 1 to {MAX_PATH} bytes")
    if _CONTROL.search(raw):
        raise StreamBadRequest("a stream path has no control characters")
    return raw


def text_header(request: HttpRequest, name: str, limit: int) -> str | None:
    """A header stored as text: bounded, and without control characters."""
    value = request.headers.get(name)
    if value is not None and (len(value) > limit or _CONTROL.search(value)):
        raise StreamBadRequest(f"{name} has at most {limit} printable characters")
    return value


def _header_integer(request: HttpRequest, name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    if not _DECIMAL.fullmatch(value) or int(value) > MAX_SAFE_INTEGER:
        raise StreamBadRequest(f"{name} must be a non-negative integer")
    return int(value)


def parse_create(request: HttpRequest, path: str, body: bytes) -> stream_create.CreateRequest:
    content_type = (text_header(request, "Content-Type", MAX_TEXT) or "").strip()
    if not _CONTENT_TYPE.match(content_type):
        content_type = ""
    ttl_text = request.headers.get(p.TTL)
    expires_text = text_header(request, p.EXPIRES_AT, 64)
    if ttl_text is not None and expires_text is not None:
        raise StreamBadRequest("give Stream-TTL or Stream-Expires-At, not both")
    ttl = _header_integer(request, p.TTL)
    expires_at: datetime | None = None
    if expires_text is not None:
        try:
            expires_at = parse_datetime(expires_text.strip())
        except ValueError:
            expires_at = None
        if expires_at is None or expires_at.tzinfo is None:
            raise StreamBadRequest("Stream-Expires-At must be an RFC 3339 timestamp")
    forked_from = text_header(request, p.FORKED_FROM, MAX_PATH + 64)
    sub_offset = _header_integer(request, p.FORK_SUB_OFFSET)
    if forked_from is None and sub_offset is not None:
        raise StreamBadRequest("Stream-Fork-Sub-Offset needs Stream-Forked-From")
    fork_offset = text_header(request, p.FORK_OFFSET, 64)
    if forked_from is not None:
        forked_from = _own_path(forked_from)
    return stream_create.CreateRequest(
        path=path,
        content_type=content_type or None,
        ttl_seconds=ttl,
        expires_at=expires_at,
        expires_at_text=expires_text or "",
        closed=p.is_true(request.headers.get(p.CLOSED)),
        body=body,
        forked_from=forked_from,
        fork_offset=fork_offset,
        fork_sub_offset=sub_offset or 0,
    )


def _own_path(url_path: str) -> str:
    """The stream path of a ``Stream-Forked-From`` value (a URL path on this server)."""
    prefix = "/" + ds_settings.STREAMS_PREFIX
    value = url_path.strip()
    if value.startswith(prefix):
        return value[len(prefix) :]
    return value.lstrip("/")


def parse_producer(request: HttpRequest) -> Producer | None:
    given = [
        text_header(request, h, MAX_TEXT) for h in (p.PRODUCER_ID, p.PRODUCER_EPOCH, p.PRODUCER_SEQ)
    ]
    if all(v is None for v in given):
        return None
    if any(v is None for v in given):
        raise StreamBadRequest("Producer-Id, Producer-Epoch and Producer-Seq go together")
    if not given[0]:
        raise StreamBadRequest("Producer-Id must not be empty")
    epoch = _header_integer(request, p.PRODUCER_EPOCH)
    seq = _header_integer(request, p.PRODUCER_SEQ)
    assert given[0] is not None and epoch is not None and seq is not None
    return Producer(given[0], epoch, seq)


def _state_headers(response: HttpResponse, state: StreamState) -> HttpResponse:
    response[p.NEXT_OFFSET] = state.next_offset
    if state.closed:
        response[p.CLOSED] = "true"
    return response


async def put(request: HttpRequest, path: str) -> HttpResponse:
    body = read_body(request)
    state, created = await acreate(parse_create(request, path, body))
    response = HttpResponse(status=201 if created else 200, content_type=state.content_type)
    if created:
        response["Location"] = request.build_absolute_uri(request.path)
    return _state_headers(response, state)


async def post(request: HttpRequest, path: str) -> HttpResponse:
    producer = parse_producer(request)
    close = p.is_true(request.headers.get(p.CLOSED))
    body = read_body(request)
    content_type = text_header(request, "Content-Type", MAX_TEXT)
    if not body and not close:
        raise StreamBadRequest("an append needs a body (or Stream-Closed: true)")
    if body and not content_type:
        raise StreamBadRequest("an append needs a Content-Type")
    result = await aappend(
        path,
        body,
        content_type=content_type,
        stream_seq=text_header(request, p.SEQ, MAX_TEXT),
        producer=producer,
        close=close,
    )
    status = 200 if producer is not None and not result.duplicate and body else 204
    response = _state_headers(HttpResponse(status=status), result.state)
    if producer is not None:
        response[p.PRODUCER_EPOCH] = str(producer.epoch)
        response[p.PRODUCER_SEQ] = str(result.producer_seq)
    return response


async def head(request: HttpRequest, path: str) -> HttpResponse:
    state = await astream_for_head(path)
    response = _state_headers(HttpResponse(content_type=state.content_type), state)
    response["Cache-Control"] = p.NO_STORE
    if state.ttl_seconds is not None:
        response[p.TTL] = str(state.ttl_seconds)
    if state.expires_at_text:
        response[p.EXPIRES_AT] = state.expires_at_text
    closed = ":c" if state.closed else ""
    response["ETag"] = f'"s{state.id}:-1:{state.next_offset}{closed}"'
    return response


async def get(request: HttpRequest, path: str) -> HttpResponse:
    state = await astream_for_read(path)
    return await read(request, GenericSource(state))


async def delete(request: HttpRequest, path: str) -> HttpResponse:
    await adelete(path)
    return HttpResponse(status=204)


HANDLERS: dict[str, Any] = {
    "PUT": put,
    "POST": post,
    "GET": get,
    "HEAD": head,
    "DELETE": delete,
}


async def stream_view(request: HttpRequest, path: str) -> HttpResponse:
    """Every method on one generic stream's URL."""
    if ds_settings.STREAMS_ACCESS == "off":
        return p.plain(404, "no such stream")
    if request.method == "OPTIONS":
        return p.preflight()
    handler = HANDLERS.get(request.method or "")
    if handler is None:
        response = p.plain(405, "method not allowed")
        response["Allow"] = "GET, HEAD, POST, PUT, DELETE, OPTIONS"
        return response
    write = request.method not in access.SAFE_METHODS
    # Streams open to anyone need no caller: no session or token to look up.
    if not access.open_to_anyone(write=write):
        caller = await aidentify(request)
        if caller is None:
            return p.plain(401, "the token is not valid")
        if caller.csrf_failure and write:
            return p.plain(403, caller.csrf_failure)
        if not access.may_use_streams(caller, write=write):
            return p.plain(401 if caller.anonymous else 403, "not allowed to use streams")
    try:
        response = await handler(request, stream_path(request, path))
    except StreamError as exc:
        return p.error(exc)
    return p.decorate(response)
