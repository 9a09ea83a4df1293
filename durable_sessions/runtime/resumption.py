"""Continuing a reply whose earlier attempt was cut off (its worker died or stopped).

The finished parts of the interrupted attempt stay as they are, and the agent reads them
in :attr:`~durable_sessions.agents.Turn.reply`. A text part cut mid-stream is still
open: the new attempt's text continues it, without writing twice what the customer
already reads. While the new output repeats the cut text, nothing is written; the text
that follows it is appended to the same part. When the new output says something else,
the cut part ends as ``cancelled`` (its text leaves the message's content, clients strike
it through) and the new text starts a part of its own: a visible restart, never a
duplicate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from channels.db import database_sync_to_async

from durable_sessions.models import MessagePart, PartState, PartType
from durable_sessions.service import parts
from durable_sessions.service.text import streaming_text
from durable_sessions.service.transient import retrying

db = database_sync_to_async


class ReplyWriter(Protocol):
    """What of :class:`~durable_sessions.runtime.reply.ReplyWriter` a continuation uses."""

    cut: CutPart | None
    part: Any
    buffer: Any
    announce: Callable[[str, str | None], Awaitable[None]]

    @property
    def what(self) -> str: ...


def cut_text(part: MessagePart) -> str:
    """The text a part cut mid-stream holds so far (the one place that reads it): its
    stored text and its deltas, read afresh."""
    fresh = MessagePart.objects.select_related("message").get(pk=part.pk)
    return streaming_text(fresh.message, part_id=fresh.wire_id).part(fresh)


@dataclass
class CutPart:
    """The open text part of an interrupted attempt, and how much of it the new attempt
    has said again."""

    pk: int
    text: str
    matched: int = 0

    @property
    def rest(self) -> str:
        return self.text[self.matched :]


def find_cut(existing: list[MessagePart]) -> MessagePart | None:
    """The reply's text part left streaming by the interrupted attempt, if its last part
    is one."""
    last = existing[-1] if existing else None
    if last is not None and last.type == PartType.TEXT and last.state == PartState.STREAMING:
        return last
    return None


async def continue_text(writer: ReplyWriter, chunk: str) -> str:
    """What of ``chunk`` is new, while the writer holds a cut part: the repeated text is
    dropped; on a divergence the cut part ends as cut and the whole new text is returned
    (it starts a part of its own)."""
    cut = writer.cut
    assert cut is not None
    rest = cut.rest
    if rest.startswith(chunk):
        cut.matched += len(chunk)
        if cut.matched == len(cut.text):
            writer.cut = None  # said again in full: what follows continues the part
            await writer.announce("streaming", None)
        return ""
    if chunk.startswith(rest):
        writer.cut = None
        await writer.announce("streaming", None)
        return chunk[len(rest) :]
    said = cut.text[: cut.matched]
    await abandon(writer)
    return said + chunk


async def settle(writer: ReplyWriter) -> None:
    """Before the current part ends while a cut part is held: the new output went on to
    something else (a tool call, the end of its answer) without contradicting the cut
    text, which stays as it is and ends like any part."""
    writer.cut = None


async def abandon(writer: ReplyWriter) -> None:
    """End the cut part as cut; the writer then has no open part."""
    cut, writer.cut = writer.cut, None
    if cut is None:
        return
    writer.buffer.take()
    writer.part = None
    await retrying(lambda: db(parts.cut_part)(cut.pk), f"{writer.what}: end a cut part")
