"""Creating generic Durable Streams: PUT, its idempotent repeat, and forks.

A fork copies the entries it inherits (and, with a sub-offset, the part of the next
append it inherits) into its own rows: offsets stay those of the source up to the fork
point, reads never touch the source, and the source may be deleted or expire while the
fork lives on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from durable_sessions.delivery.publish import publish_on_commit
from durable_sessions.delivery.stream_wakeups import stream_wakeup
from durable_sessions.errors import StreamBadRequest, StreamConflict, StreamNotFound
from durable_sessions.service.stream_log import StreamState, encode, locked, write_entry
from durable_sessions.stream_models import Stream, StreamEntry, media_type_of
from durable_sessions.stream_offsets import format_offset, parse_offset

DEFAULT_TYPE = "application/octet-stream"
_COPY_BATCH = 500


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A PUT, parsed and validated by the transport."""

    path: str
    content_type: str | None = None
    ttl_seconds: int | None = None
    expires_at: datetime | None = None
    expires_at_text: str = ""
    closed: bool = False
    body: bytes = b""
    forked_from: str | None = None
    fork_offset: str | None = None
    fork_sub_offset: int = 0


def _normal(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def create(request: CreateRequest) -> tuple[StreamState, bool]:
    """Create the stream, or confirm the one there (True when created). Raises
    ``StreamConflict`` when a stream with another configuration is at the path."""
    for _attempt in range(3):
        try:
            with transaction.atomic():
                existing = locked(request.path, allow_gone=True)
                if existing is not None:
                    return _confirm(existing, request), False
                return StreamState.of(_create(request)), True
        except IntegrityError:
            continue  # another request created it meanwhile: confirm that one
    raise StreamConflict("the stream is being created by another request")


def _confirm(stream: Stream, request: CreateRequest) -> StreamState:
    if stream.soft_deleted:
        raise StreamConflict("a deleted stream with live forks still holds this path")
    wanted_type = _normal(request.content_type)
    if not wanted_type:
        wanted_type = _normal(stream.content_type) if request.forked_from else DEFAULT_TYPE
    same = (
        wanted_type == _normal(stream.content_type)
        and request.ttl_seconds == stream.ttl_seconds
        and request.expires_at_text == stream.expires_at_text
        and request.closed == stream.closed
        and (request.forked_from or "") == stream.fork_source_path
        and (request.fork_offset is None or request.fork_offset == stream.fork_offset)
        and request.fork_sub_offset == stream.fork_sub_offset
    )
    if not same:
        raise StreamConflict("a stream with another configuration exists at this path")
    return StreamState.of(stream)


def _create(request: CreateRequest) -> Stream:
    now = timezone.now()
    stream = Stream(
        path=request.path,
        content_type=request.content_type or DEFAULT_TYPE,
        created_at=now,
        last_access_at=now,
        ttl_seconds=request.ttl_seconds,
        expires_at=request.expires_at,
        expires_at_text=request.expires_at_text,
        closed=request.closed,
    )
    stream.media_type = media_type_of(stream.content_type)
    source = None
    if request.forked_from is not None:
        source = _fork_source(request)
        _inherit_expiry(stream, source, request)
        stream.content_type = request.content_type or source.content_type
        stream.media_type = source.media_type
        stream.forked_from = source
        stream.fork_source_path = request.forked_from
    stream.save()
    if source is not None:
        _copy_fork(stream, source, request)
    write_entry(stream, encode(stream, request.body, initial=True))
    stream.save()
    publish_on_commit([stream_wakeup(stream.pk, stream.tail_seq, stream.closed)])
    return stream


def _fork_source(request: CreateRequest) -> Stream:
    assert request.forked_from is not None
    source = locked(request.forked_from, allow_gone=True)
    if source is None:
        raise StreamNotFound("the stream to fork does not exist")
    if source.soft_deleted:
        raise StreamConflict("the stream to fork was deleted")
    if request.content_type and _normal(request.content_type) != _normal(source.content_type):
        raise StreamConflict("a fork keeps its source's content type")
    return source


def _inherit_expiry(stream: Stream, source: Stream, request: CreateRequest) -> None:
    """A fork without TTL or expiry of its own inherits its source's."""
    if request.ttl_seconds is not None or request.expires_at is not None:
        return
    if source.ttl_seconds is not None:
        stream.ttl_seconds = source.ttl_seconds
    elif source.expires_at is not None:
        stream.expires_at = source.expires_at
        stream.expires_at_text = source.expires_at_text


def _copy_fork(stream: Stream, source: Stream, request: CreateRequest) -> None:
    """Copy the inherited entries into ``stream`` and set its tail at the fork point."""
    if request.fork_offset is None:
        seq, end = source.tail_seq, source.tail_bytes
    else:
        parsed = parse_offset(request.fork_offset)
        if parsed is None:
            raise StreamBadRequest("Stream-Fork-Offset is not an offset")
        seq, end = parsed
        if (seq, end) > (source.tail_seq, source.tail_bytes) or seq > source.tail_seq:
            raise StreamBadRequest("Stream-Fork-Offset is past the source's tail")
    stream.fork_offset = format_offset(seq, end)
    stream.fork_sub_offset = request.fork_sub_offset
    rows = source.entries.filter(seq__lte=seq).order_by("seq").values_list("seq", "end", "data")
    batch: list[StreamEntry] = []
    last_end = 0
    for entry_seq, entry_end, data in rows.iterator(chunk_size=_COPY_BATCH):
        batch.append(StreamEntry(stream=stream, seq=entry_seq, end=entry_end, data=bytes(data)))
        last_end = entry_end
        if len(batch) >= _COPY_BATCH:
            StreamEntry.objects.bulk_create(batch)
            batch = []
    StreamEntry.objects.bulk_create(batch)
    stream.tail_seq, stream.tail_bytes = seq, last_end if seq else 0
    if request.fork_sub_offset:
        partial = _part_of_next(source, seq, request.fork_sub_offset)
        write_entry(stream, partial)


def _part_of_next(source: Stream, seq: int, count: int) -> bytes:
    """The first ``count`` messages (JSON) or bytes of the append after ``seq``."""
    row = source.entries.filter(seq=seq + 1).values_list("data", flat=True).first()
    if row is None:
        raise StreamBadRequest("Stream-Fork-Sub-Offset is past the source's tail")
    data = bytes(row)
    if source.is_json:
        items = json.loads(b"[" + data + b"]")
        if count > len(items):
            raise StreamBadRequest("Stream-Fork-Sub-Offset is past the next append")
        return ",".join(
            json.dumps(i, separators=(",", ":"), ensure_ascii=False) for i in items[:count]
        ).encode()
    if count > len(data):
        raise StreamBadRequest("Stream-Fork-Sub-Offset is past the next append")
    return data[:count]
