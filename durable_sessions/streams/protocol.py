"""Names, headers and small answers of the Durable Streams protocol."""

from __future__ import annotations

import random
import time

from django.http import HttpResponse

from durable_sessions.app_settings import ds_settings
from durable_sessions.errors import StreamError

NEXT_OFFSET = "Stream-Next-Offset"
UP_TO_DATE = "Stream-Up-To-Date"
CURSOR = "Stream-Cursor"
CLOSED = "Stream-Closed"
TTL = "Stream-TTL"
EXPIRES_AT = "Stream-Expires-At"
SEQ = "Stream-Seq"
FORKED_FROM = "Stream-Forked-From"
FORK_OFFSET = "Stream-Fork-Offset"
FORK_SUB_OFFSET = "Stream-Fork-Sub-Offset"
PRODUCER_ID = "Producer-Id"
PRODUCER_EPOCH = "Producer-Epoch"
PRODUCER_SEQ = "Producer-Seq"
SSE_ENCODING = "Stream-SSE-Data-Encoding"

REQUEST_HEADERS = (
    "content-type, authorization, if-none-match, x-csrftoken, "
    f"{SEQ}, {TTL}, {EXPIRES_AT}, {CLOSED}, {PRODUCER_ID}, {PRODUCER_EPOCH}, "
    f"{PRODUCER_SEQ}, {FORKED_FROM}, {FORK_OFFSET}, {FORK_SUB_OFFSET}"
)
EXPOSED_HEADERS = (
    f"{NEXT_OFFSET}, {CURSOR}, {UP_TO_DATE}, {CLOSED}, {TTL}, {EXPIRES_AT}, "
    f"{PRODUCER_EPOCH}, {PRODUCER_SEQ}, Producer-Expected-Seq, Producer-Received-Seq, "
    f"{SSE_ENCODING}, ETag, Location, Content-Type"
)
# Cacheable chunk of data (its bytes never change); no-store for answers about the tail.
CACHE_CHUNK = "private, max-age=60, stale-while-revalidate=300"
NO_STORE = "no-store"

# Cursors count 20-second intervals since this instant (the protocol's defaults), so that
# caches in front of long polls collapse requests per interval.
CURSOR_EPOCH = 1728432000  # 2024-10-09T00:00:00Z
CURSOR_INTERVAL = 20
MAX_JITTER_SECONDS = 3600


def is_true(value: str | None) -> bool:
    """A ``Stream-Closed`` header counts only when it says ``true`` (any case)."""
    return value is not None and value.strip().lower() == "true"


def response_cursor(client_cursor: str | None) -> str:
    """The interval number now, or past the client's when it is not behind: a cursor
    never repeats, so a cache never loops on one empty answer."""
    current = int((time.time() - CURSOR_EPOCH) // CURSOR_INTERVAL)
    try:
        theirs = int(client_cursor) if client_cursor else None
    except ValueError:
        theirs = None
    if theirs is None or theirs < current:
        return str(current)
    jitter = random.randint(1, MAX_JITTER_SECONDS)
    return str(theirs + max(1, -(-jitter // CURSOR_INTERVAL)))


def decorate(response: HttpResponse) -> HttpResponse:
    """The headers every stream response carries: CORS and browser safety."""
    origin = ds_settings.STREAMS_CORS_ORIGIN
    if origin:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        if origin != "*":
            response["Vary"] = "Origin"
    response["X-Content-Type-Options"] = "nosniff"
    response["Cross-Origin-Resource-Policy"] = "cross-origin" if origin else "same-origin"
    return response


def preflight() -> HttpResponse:
    response = HttpResponse(status=204)
    if ds_settings.STREAMS_CORS_ORIGIN:
        response["Access-Control-Allow-Methods"] = "GET, HEAD, POST, PUT, DELETE, OPTIONS"
        response["Access-Control-Allow-Headers"] = REQUEST_HEADERS
        response["Access-Control-Max-Age"] = "600"
    return decorate(response)


def plain(status: int, message: str, headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
    for name, value in (headers or {}).items():
        response[name] = value
    if status in (200, 204, 304, 400, 404, 409, 410):
        response["Cache-Control"] = NO_STORE
    return decorate(response)


def error(exc: StreamError) -> HttpResponse:
    return plain(exc.status_code, exc.message, exc.headers)
