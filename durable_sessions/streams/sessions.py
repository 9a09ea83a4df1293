"""Each durable session as a read-only Durable Streams JSON stream.

Every event of the session's log is one JSON message (the same frame the websocket
sends), and the offset after event ``seq`` is ``format_offset(seq)``: resuming from an
offset yields exactly the events after it. A closed session is a closed stream. Writes go
through the session protocol (websocket or REST API), so PUT, POST and DELETE are refused
with 405. Access is the websocket's: the adapter decides, for a token's user, a logged-in
user or an anonymous visitor by the session cookie.
"""

from __future__ import annotations

import uuid

from channels.db import database_sync_to_async
from django.http import HttpRequest, HttpResponse

from durable_sessions.adapter import get_adapter
from durable_sessions.app_settings import ds_settings
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


aauthorize = database_sync_to_async(authorize)
aread_session_chunk = database_sync_to_async(read_session_chunk)


class SessionSource:
    """A session's event log as :mod:`durable_sessions.streams.reading` reads it."""

    content_type = CONTENT_TYPE
    is_json = True

    def __init__(self, session_id: uuid.UUID, tail: Tail) -> None:
        self.session_id = session_id
        self.etag_id = f"d{session_id.hex}"
        self.tail = tail

    async def read(self, after: int) -> Chunk:
        return await aread_session_chunk(self.session_id, after)

    def waiter(self) -> GroupWaiter:
        return GroupWaiter(
            session_group(self.session_id), lambda m: m.get("type") == LIVE_MESSAGE_TYPE
        )


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
    return await read(request, SessionSource(parsed, tail))
