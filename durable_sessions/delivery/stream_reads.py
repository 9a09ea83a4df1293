"""Reading generic streams: one indexed range query per chunk, bounded in bytes."""

from __future__ import annotations

from dataclasses import dataclass

from durable_sessions.stream_models import Stream, StreamEntry
from durable_sessions.stream_offsets import format_offset

# Rows fetched per round trip while filling a chunk.
_ROWS = 100


@dataclass(frozen=True, slots=True)
class Tail:
    """Where a stream ends now, and whether it ends for good."""

    seq: int
    end: int
    closed: bool
    gone: bool = False

    @property
    def offset(self) -> str:
        return format_offset(self.seq, self.end)


@dataclass(frozen=True, slots=True)
class Chunk:
    """Entries read after an offset: ``(seq, end, data)`` each, and whether more follow."""

    entries: list[tuple[int, int, bytes]]
    more: bool
    tail: Tail


def read_chunk(stream_id: int, after: int, max_bytes: int) -> Chunk:
    """The entries with ``seq > after``, stopping before the one that would pass
    ``max_bytes`` (the first always comes), and the stream's tail as read with them."""
    row = (
        Stream.objects.filter(pk=stream_id)
        .values_list("tail_seq", "tail_bytes", "closed", "soft_deleted")
        .first()
    )
    if row is None:
        return Chunk([], False, Tail(after, 0, False, gone=True))
    tail = Tail(row[0], row[1], row[2], gone=row[3])
    if after >= tail.seq or tail.gone:
        return Chunk([], False, tail)
    rows = (
        StreamEntry.objects.filter(stream_id=stream_id, seq__gt=after, seq__lte=tail.seq)
        .order_by("seq")
        .values_list("seq", "end", "data")
    )
    entries: list[tuple[int, int, bytes]] = []
    total = 0
    for seq, end, data in rows.iterator(chunk_size=_ROWS):
        data = bytes(data)
        if entries and total + len(data) > max_bytes:
            return Chunk(entries, True, tail)
        entries.append((seq, end, data))
        total += len(data)
    return Chunk(entries, False, tail)
