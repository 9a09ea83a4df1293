"""Each durable session as a read-only Durable Streams JSON stream.

Every event of the session's log is one JSON message (the same frame the websocket
sends), and the offset after event ``seq`` is ``format_offset(seq)``: resuming from an
offset yields exactly the events after it. A closed session is a closed stream. Writes go
through the session protocol (websocket or REST API), so PUT, POST and DELETE are refused
with 405. Access is the websocket's: the adapter decides, for a token's user, a logged-in
user or an anonymous visitor by the session cookie.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from channels.db import database_sync_to_async
from django.http import HttpRequest, HttpResponse

from durable_sessions.adapter import get_adapter
from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery import limits
from durable_sessions.delivery.groups import session_group
from durable_sessions.delivery.publish import LIVE_MESSAGE_TYPE
from durable_sessions.delivery.replay import read_wire_page
from durable_sessions.delivery.stream_reads import Chunk, Tail
from durable_sessions.delivery.stream_wakeups import GroupWaiter
from durable_sessions.models import DurableSession, Status
from durable_sessions.streams import access
from durable_sessions.streams import protocol as p
from durable_sessions.streams.reading import read

CONTENT_TYPE = "application/json"


def session_tail(session_id: uuid.UUID) -> Tail:
    row = DurableSession.objects.filter(pk=session_id).values_list("last_seq", "status").first()
    if row is None:
        return Tail(0, 0, False, gone=True)
    return Tail(row[0], 0, row[1] == Status.CLOSED)


def read_session_chunk(session_id: uuid.UUID, after: int) -> Chunk:
    tail = session_tail(session_id)
    if tail.gone or after >= tail.seq:
        return Chunk([], False, tail)
    page, more = read_wire_page(
        session_id,
        after,
        until=tail.seq,
        limit=ds_settings.REPLAY_PAGE_SIZE,
        max_chars=ds_settings.STREAMS_READ_BYTES,
    )
    return Chunk([(seq, 0, text.encode()) for seq, text in page], more, tail)


def authorize(request: HttpRequest, session_id: uuid.UUID) -> Tail | HttpResponse:
    """The session's tail when the caller may read it, else the refusal. A session the
    caller may not read is answered like one that does not exist."""
    caller = access.identify(request)
    if caller is None:
        return p.plain(401, "the token is not valid")
    session = DurableSession.objects.filter(pk=session_id).first()
    if session is None or get_adapter().access(session, caller.user, caller.visitor) is None:
        return p.plain(404, "no such stream")
    return Tail(session.last_seq, 0, session.status == Status.CLOSED)


def still_allowed(request: HttpRequest, session_id: uuid.UUID) -> bool:
    """Whether the caller may still read: the token still valid, the Django session not
    logged out, the user still active and allowed (all read afresh)."""
    caller = access.identify(request)
    if caller is None:
        return False
    user = caller.user
    if not caller.by_token:
        store = getattr(request, "session", None)
        key = getattr(store, "session_key", None)
        if key is not None and not store.exists(key):  # type: ignore[union-attr]
            return False  # logged out (or the session expired)
        if user.is_authenticated:
            fresh = type(user)._default_manager.filter(pk=user.pk, is_active=True).first()
            if fresh is None:
                return False
            user = fresh
    session = DurableSession.objects.filter(pk=session_id).first()
    return session is not None and get_adapter().access(session, user, caller.visitor) is not None


aauthorize = database_sync_to_async(authorize)
aread_session_chunk = database_sync_to_async(read_session_chunk)
astill_allowed = database_sync_to_async(still_allowed)


class SessionSource:
    """A session's event log as :mod:`durable_sessions.streams.reading` reads it."""

    content_type = CONTENT_TYPE
    is_json = True
    # A transcript is kept by no cache, as every REST API response (docs/security.md).
    cache_control = p.NO_STORE

    def __init__(self, request: HttpRequest, session_id: uuid.UUID, tail: Tail) -> None:
        self.request = request
        self.session_id = session_id
        self.etag_id = f"d{session_id.hex}"
        self.tail = tail
        self.checked_at = time.monotonic()

    async def read(self, after: int) -> Chunk:
        # A reader that follows for long is checked again, as a websocket is: a logout or
        # a revoked permission ends the response (a long poll answers 404).
        if time.monotonic() - self.checked_at >= ds_settings.RECHECK_ACCESS_SECONDS:
            if not await astill_allowed(self.request, self.session_id):
                return Chunk([], False, Tail(after, 0, False, gone=True))
            self.checked_at = time.monotonic()
        return await aread_session_chunk(self.session_id, after)

    def waiter(self) -> GroupWaiter:
        return GroupWaiter(
            session_group(self.session_id), lambda m: m.get("type") == LIVE_MESSAGE_TYPE
        )

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[HttpResponse | None]:
        """One of the visitor's ``LIMIT_LONG_POLLS_PER_VISITOR`` waiting requests, shared
        with the REST API's long polls (and counted across processes with Redis)."""
        async with limits.Held("long_poll") as held:
            refused = await held.take(self.request)
            if refused is None:
                yield None
            else:
                retry = {"Retry-After": str(refused.retry_after or 1)}
                yield p.plain(429, refused.message, retry)


async def session_stream_view(request: HttpRequest, session_id: str) -> HttpResponse:
    """GET and HEAD on one session's stream."""
    if request.method == "OPTIONS":
        return p.preflight()
    if request.method not in ("GET", "HEAD"):
        response = p.plain(405, "a session is written through the session protocol")
        response["Allow"] = "GET, HEAD, OPTIONS"
        return response
    try:
        parsed = uuid.UUID(session_id)
    except ValueError:
        return p.plain(404, "no such stream")
    tail = await aauthorize(request, parsed)
    if isinstance(tail, HttpResponse):
        return tail
    if request.method == "HEAD":
        response = HttpResponse(content_type=CONTENT_TYPE)
        response[p.NEXT_OFFSET] = tail.offset
        response["Cache-Control"] = p.NO_STORE
        if tail.closed:
            response[p.CLOSED] = "true"
        return p.decorate(response)
    return await read(request, SessionSource(request, parsed, tail))
