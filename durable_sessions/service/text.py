"""The text of a streaming reply, assembled from its deltas in the log.

A delta is written to the log only: rewriting the message's (and its part's) whole text
at every delta would cost more as the reply grows (TOAST and WAL for a text of a few KB).
The stored text is written once, when a part ends and when the message ends (complete,
stopped, failed, taken over); until then, the text of a streaming message or part is its
stored text followed by its deltas. :func:`streaming_text` reads those deltas in one
query, and everything that shows or continues a streaming reply goes through it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from durable_sessions import wire
from durable_sessions.models import Event, Message, MessagePart, MessageState, PartState

# Part states in which a part still grows by deltas.
GROWING = (PartState.STREAMING, PartState.INPUT_STREAMING)


@dataclass
class StreamedText:
    """What a reply's deltas add: to its content (text deltas) and to each part."""

    content: str = ""
    parts: dict[str, str] = field(default_factory=dict)

    def part(self, part: MessagePart) -> str:
        """The part's text: what is stored, then what its deltas add while it grows."""
        if part.state not in GROWING:
            return part.text
        return part.text + self.parts.get(part.wire_id, "")


def streaming_text(message: Message, *, part_id: str | None = None) -> StreamedText:
    """The text the deltas of ``message`` add, per message and per part (one query).

    ``part_id`` (a part's wire id) reads only that part's deltas. A message that no longer
    streams has had its text written: its deltas are those of a finished reply (they may
    be compacted already) and are not read again by readers."""
    query = Event.objects.filter(
        session_id=message.session_id,
        seq__gt=message.seq,
        type__in=(wire.MESSAGE_DELTA, wire.PART_DELTA, wire.PART_ENDED),
        payload__message_id=message.pk,
    )
    if part_id is not None:
        query = query.filter(payload__part_id=part_id)
    rows = list(query.order_by("seq").values_list("type", "payload"))
    # A text part cut off by a lost worker and said again in a new part (``"cut": true``
    # on its end): its deltas are no longer the reply's content.
    cut = {p.get("part_id") for t, p in rows if t == wire.PART_ENDED and p.get("cut")}
    content: list[str] = []
    by_part: dict[str, list[str]] = {}
    for type_, payload in rows:
        if type_ == wire.PART_ENDED:
            continue
        text = payload.get("text") or ""
        pid = payload.get("part_id")
        if type_ == wire.MESSAGE_DELTA and pid not in cut:
            content.append(text)
        if pid is None and type_ == wire.MESSAGE_DELTA:
            pid = part_id_zero(message.pk)  # a reply without part rows: one text part
        if pid is not None:
            by_part.setdefault(pid, []).append(text)
    return StreamedText("".join(content), {pid: "".join(t) for pid, t in by_part.items()})


def part_id_zero(message_id: int) -> str:
    return f"m{message_id}p0"


def current_content(message: Message) -> str:
    """The message's text as it stands: its stored content, plus its deltas if streaming."""
    if message.state != MessageState.STREAMING:
        return message.content
    return message.content + streaming_text(message).content


def with_streaming_text(messages: Iterable[Message]) -> None:
    """Fill in the text of the streaming messages among ``messages`` (and of their
    prefetched parts) from their deltas, in place: one query per streaming message, none
    for the others."""
    for message in messages:
        if message.state != MessageState.STREAMING:
            continue
        streamed = streaming_text(message)
        message.content += streamed.content
        for part in getattr(message, "_prefetched_objects_cache", {}).get("parts", ()):
            part.text = streamed.part(part)


def with_part_text(parts: Iterable[MessagePart]) -> None:
    """Fill in the text of growing parts (e.g. of the reply a run continues), in place:
    one query for their messages, then one per message."""
    growing = [p for p in parts if p.state in GROWING]
    by_message: dict[int, list[MessagePart]] = {}
    for part in growing:
        by_message.setdefault(part.message_id, []).append(part)
    if not by_message:
        return
    messages = Message.objects.only("pk", "session_id", "seq").in_bulk(list(by_message))
    for message_id, rows in by_message.items():
        streamed = streaming_text(messages[message_id])
        for part in rows:
            part.text = streamed.part(part)
