"""The write path of generic Durable Streams: locking a stream, expiry, appends and
idempotent producers, closing, deleting.

Every write locks the stream's row (``SELECT ... FOR UPDATE``; SQLite's write lock does
the same), checks what it read under that lock, writes the entry, the tail, the producer's
state and the closure in one transaction, and wakes the stream's readers once it commits.
Two processes appending to one stream therefore take turns, and a producer's check and
append are one step: a retry can never be stored twice.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from channels.db import DatabaseSyncToAsync
from django.db import connection, transaction
from django.utils import timezone

from durable_sessions.delivery.publish import collecting, make_async, publish_now, publish_on_commit
from durable_sessions.delivery.stream_wakeups import stream_wakeup
from durable_sessions.errors import (
    StaleProducerEpoch,
    StreamBadRequest,
    StreamConflict,
    StreamGone,
    StreamNotFound,
)
from durable_sessions.stream_models import (
    JSON_TYPE,
    Stream,
    StreamEntry,
    StreamProducer,
    media_type_of,
)
from durable_sessions.stream_offsets import format_offset

CLOSED = "Stream-Closed"
NEXT_OFFSET = "Stream-Next-Offset"


@dataclass(frozen=True, slots=True)
class StreamState:
    """What a response says about a stream: its identity, configuration and tail."""

    id: int
    path: str
    content_type: str
    tail_seq: int
    tail_bytes: int
    closed: bool
    ttl_seconds: int | None
    expires_at_text: str

    @property
    def next_offset(self) -> str:
        return format_offset(self.tail_seq, self.tail_bytes)

    @property
    def is_json(self) -> bool:
        return media_type_of(self.content_type) == JSON_TYPE

    @classmethod
    def of(cls, stream: Stream) -> StreamState:
        return cls(
            stream.pk,
            stream.path,
            stream.content_type,
            stream.tail_seq,
            stream.tail_bytes,
            stream.closed,
            stream.ttl_seconds,
            stream.expires_at_text,
        )


@dataclass(frozen=True, slots=True)
class Producer:
    """An idempotent producer's headers: who, which epoch, which batch."""

    id: str
    epoch: int
    seq: int

    @property
    def key(self) -> str:
        return f"{self.epoch}:{self.seq}:{self.id}"


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The stream after an append or close; ``duplicate`` when a producer's retry was
    recognised and nothing was written; ``producer_seq`` is the producer's last batch."""

    state: StreamState
    duplicate: bool = False
    producer_seq: int | None = None


def is_expired(stream: Stream, now: datetime) -> bool:
    if stream.expires_at is not None and now >= stream.expires_at:
        return True
    ttl = stream.ttl_seconds
    if ttl is None:
        return False
    try:
        return now >= stream.last_access_at + timedelta(seconds=ttl)
    except OverflowError:
        return False  # a window past the calendar's end never closes


def _has_forks(stream: Stream) -> bool:
    return Stream.objects.filter(forked_from=stream).exists()


def remove(stream: Stream) -> None:
    """Delete ``stream`` and, up its fork chain, each soft-deleted source it was the last
    fork of."""
    source_id = stream.forked_from_id
    stream.delete()
    while source_id is not None:
        source = Stream.objects.select_for_update().filter(pk=source_id).first()
        if source is None or not source.soft_deleted or _has_forks(source):
            return
        source_id = source.forked_from_id
        source.delete()


def locked(path: str, *, allow_gone: bool = False) -> Stream | None:
    """The stream at ``path``, row locked, or None; an expired stream is removed first
    (or soft-deleted while forks read from it). Call inside a transaction."""
    stream = Stream.objects.select_for_update().filter(path=path).first()
    if stream is None:
        return None
    if not stream.soft_deleted and is_expired(stream, timezone.now()):
        if _has_forks(stream):
            stream.soft_deleted = True
            stream.save(update_fields=["soft_deleted"])
            publish_on_commit([stream_wakeup(stream.pk, stream.tail_seq, stream.closed)])
        else:
            remove(stream)
            return None
    if stream.soft_deleted and not allow_gone:
        raise StreamGone("the stream was deleted")
    return stream


def require(path: str) -> Stream:
    stream = locked(path)
    if stream is None:
        raise StreamNotFound("no such stream")
    return stream


def stream_for_read(path: str) -> StreamState:
    """The stream a read is about: expiry applied, and its sliding TTL renewed (a read
    counts as use; HEAD does not come here)."""
    with transaction.atomic():
        stream = Stream.objects.filter(path=path).first()
        if stream is None:
            raise StreamNotFound("no such stream")
        if stream.soft_deleted:
            raise StreamGone("the stream was deleted")
        now = timezone.now()
        if is_expired(stream, now):
            stream = require(path)  # removes it (404) or soft-deletes it (410)
        if stream.ttl_seconds is not None:
            Stream.objects.filter(pk=stream.pk).update(last_access_at=now)
        return StreamState.of(stream)


def stream_for_head(path: str) -> StreamState:
    """Like :func:`stream_for_read` without renewing the TTL."""
    stream = Stream.objects.filter(path=path).first()
    if stream is None:
        raise StreamNotFound("no such stream")
    if stream.soft_deleted:
        raise StreamGone("the stream was deleted")
    if is_expired(stream, timezone.now()):
        with transaction.atomic():
            stream = require(path)
    return StreamState.of(stream)


def json_messages(body: bytes, *, allow_empty: bool) -> list[str]:
    """The messages of a JSON-mode body: an array is flattened one level."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise StreamBadRequest("the body is not valid JSON") from None
    items = value if isinstance(value, list) else [value]
    if not items and not allow_empty:
        raise StreamBadRequest("an empty JSON array appends nothing")
    return [json.dumps(item, separators=(",", ":"), ensure_ascii=False) for item in items]


def encode(stream: Stream, body: bytes, *, initial: bool) -> bytes:
    """The bytes of one entry, validated for the stream's content type ("" for nothing)."""
    if not stream.is_json or not body:
        return body
    return ",".join(json_messages(body, allow_empty=initial)).encode()


def write_entry(stream: Stream, data: bytes) -> None:
    """Append ``data`` as the next entry (the caller saves the stream's row)."""
    if not data:
        return
    stream.tail_seq += 1
    stream.tail_bytes += len(data)
    StreamEntry.objects.create(stream=stream, seq=stream.tail_seq, end=stream.tail_bytes, data=data)


def _check_producer(stream: Stream, producer: Producer) -> tuple[StreamProducer | None, bool]:
    """The producer's row and whether this batch is a duplicate; raises for a stale epoch,
    a new epoch not starting at 0, or a gap."""
    state = StreamProducer.objects.filter(stream=stream, producer_id=producer.id).first()
    if state is None or producer.epoch > state.epoch:
        if producer.seq != 0:
            if state is None:
                raise StreamConflict(
                    "producer sequence gap",
                    {"Producer-Expected-Seq": "0", "Producer-Received-Seq": str(producer.seq)},
                )
            raise StreamBadRequest("a new producer epoch must start at sequence 0")
        return state, False
    if producer.epoch < state.epoch:
        raise StaleProducerEpoch("stale producer epoch", {"Producer-Epoch": str(state.epoch)})
    if producer.seq <= state.last_seq:
        return state, True
    if producer.seq != state.last_seq + 1:
        raise StreamConflict(
            "producer sequence gap",
            {
                "Producer-Expected-Seq": str(state.last_seq + 1),
                "Producer-Received-Seq": str(producer.seq),
            },
        )
    return state, False


def _save_producer(stream: Stream, state: StreamProducer | None, producer: Producer) -> None:
    if state is None:
        StreamProducer.objects.create(
            stream=stream, producer_id=producer.id, epoch=producer.epoch, last_seq=producer.seq
        )
    else:
        state.epoch, state.last_seq = producer.epoch, producer.seq
        state.save(update_fields=["epoch", "last_seq"])


def _closed_error(stream: Stream) -> StreamConflict:
    return StreamConflict(
        "the stream is closed",
        {CLOSED: "true", NEXT_OFFSET: format_offset(stream.tail_seq, stream.tail_bytes)},
    )


def fast_append(path: str, media_type: str, data: bytes) -> StreamState | None:
    """The common append (no producer, Stream-Seq, close or expiry) in one statement on
    PostgreSQL, two elsewhere; None when the stream is not such a plain open stream of
    ``media_type``, and the full path must decide (and explain)."""
    table = connection.ops.quote_name(Stream._meta.db_table)
    entries = connection.ops.quote_name(StreamEntry._meta.db_table)
    update = (
        f"UPDATE {table} SET tail_seq = tail_seq + 1, tail_bytes = tail_bytes + %s, "
        "last_access_at = %s WHERE path = %s AND media_type = %s AND NOT closed "
        "AND NOT soft_deleted AND ttl_seconds IS NULL AND expires_at IS NULL"
    )
    params: list[object] = [len(data), timezone.now(), path, media_type]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The row lock of the UPDATE covers the INSERT: one round trip, one commit.
            cursor.execute(
                f"WITH s AS ({update} RETURNING id, tail_seq, tail_bytes, content_type) "
                f'INSERT INTO {entries} (stream_id, seq, "end", data) '
                'SELECT id, tail_seq, tail_bytes, %s FROM s RETURNING stream_id, seq, "end"',
                [*params, data],
            )
            row = cursor.fetchone()
        else:
            with transaction.atomic():
                cursor.execute(f"{update} RETURNING id, tail_seq, tail_bytes", params)
                row = cursor.fetchone()
                if row is not None:
                    cursor.execute(
                        f'INSERT INTO {entries} (stream_id, seq, "end", data) '
                        "VALUES (%s, %s, %s, %s)",
                        [row[0], row[1], row[2], data],
                    )
    if row is None:
        return None
    stream_id, seq, end = row
    publish_on_commit([stream_wakeup(stream_id, seq, False)])
    return StreamState(stream_id, path, "", seq, end, False, None, "")


def append(
    path: str,
    body: bytes,
    *,
    content_type: str | None = None,
    stream_seq: str | None = None,
    producer: Producer | None = None,
    close: bool = False,
) -> AppendResult:
    """Append ``body`` (and close the stream if ``close``); an empty body with ``close``
    only closes. Checks in the protocol's order: closed, content type, producer, Stream-Seq.
    """
    if body and producer is None and stream_seq is None and not close and content_type:
        media_type = media_type_of(content_type)
        data: bytes | None = body
        if media_type == JSON_TYPE:
            try:
                data = ",".join(json_messages(body, allow_empty=False)).encode()
            except StreamBadRequest:
                data = None  # the full path reports it, after "not found" and "closed"
        done = fast_append(path, media_type, data) if data else None
        if done is not None:
            return AppendResult(done)
    with transaction.atomic():
        stream = require(path)
        if stream.closed:
            if producer is not None and stream.closed_by == producer.key:
                return AppendResult(StreamState.of(stream), True, producer.seq)
            if not body and producer is None:
                return AppendResult(StreamState.of(stream))  # closing again: idempotent
            raise _closed_error(stream)
        if body and content_type is not None:
            if media_type_of(content_type) != stream.media_type:
                raise StreamConflict("the content type differs from the stream's")
        state = None
        if producer is not None:
            state, duplicate = _check_producer(stream, producer)
            if duplicate:
                assert state is not None
                return AppendResult(StreamState.of(stream), True, state.last_seq)
        if stream_seq is not None:
            if stream.last_stream_seq is not None and stream_seq <= stream.last_stream_seq:
                raise StreamConflict("Stream-Seq must grow")
            stream.last_stream_seq = stream_seq
        write_entry(stream, encode(stream, body, initial=False))
        if producer is not None:
            _save_producer(stream, state, producer)
        if close:
            stream.closed = True
            stream.closed_by = producer.key if producer is not None else ""
        stream.last_access_at = timezone.now()
        stream.save()
        publish_on_commit([stream_wakeup(stream.pk, stream.tail_seq, stream.closed)])
        return AppendResult(StreamState.of(stream), producer_seq=producer.seq if producer else None)


def delete(path: str) -> None:
    """Delete the stream; while forks read from it, only hide it (soft delete)."""
    with transaction.atomic():
        stream = require(path)
        publish_on_commit([stream_wakeup(stream.pk, stream.tail_seq, stream.closed)])
        if _has_forks(stream):
            stream.soft_deleted = True
            stream.save(update_fields=["soft_deleted"])
        else:
            remove(stream)


# Appends of different streams commit side by side on PostgreSQL, which groups their WAL
# flushes; on the process's one database thread they would wait for each other's commit.
# The row lock still makes the appends of one stream take turns. (SQLite has one writer
# anyway: there the database thread is used.)
APPEND_THREADS = 4
_appenders = ThreadPoolExecutor(max_workers=APPEND_THREADS, thread_name_prefix="ds-streams")


async def aappend(path: str, body: bytes, **options: Any) -> AppendResult:
    """Async twin of :func:`append`; the wake-up is sent from the event loop."""
    if connection.vendor != "postgresql":
        return await _aappend_serial(path, body, **options)
    call = DatabaseSyncToAsync(collecting, thread_sensitive=False, executor=_appenders)
    result, pending = await call(append, path, body, **options)
    await publish_now(pending)
    return result


_aappend_serial = make_async(append)
