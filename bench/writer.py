"""The durable writer: streams assistant replies as an agent worker does.

``python -m bench.writer`` runs in its own process with the servers' environment (same
database, same channel layer) and answers commands on stdin (see :mod:`bench.protocol`).
With the in-memory layer it cannot reach the server's groups, so the same
:class:`DurableWriter` runs inside the Daphne process instead (:mod:`bench.inproc`).

Every delta goes through ``service.delta_writer`` (the group commit the agent runtime
uses): committed with the next ``seq``, then published. Its text starts with the
wall-clock time of the flush.

Commands: ``prepare`` (open a streaming reply per session), ``stream`` (paced streams),
``spread`` (one delta per session, spread over some seconds), ``seed`` (grow one session
to a number of events), ``grow`` (a new reply of some deltas, left streaming), ``finish``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from bench.streams import FILLER, Send, paced, spread, stamped_text

# Events per reply when seeding a long session.
REPLY_EVENTS = 100
# Characters after which an open reply is completed (and a new one started before the next
# stream) rather than taken over: replies grow to this length, as long answers do. A delta
# costs the same however long its reply is (its text is not rewritten), so this bounds only
# what a finished reply's completion reads.
LONGEST_REPLY = 20_000


class DurableWriter:
    """Keeps one streaming assistant reply open per session it writes to."""

    def __init__(self) -> None:
        self.messages: dict[str, int] = {}
        self.written: dict[str, int] = {}  # characters sent to each open reply

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        kind = command["cmd"]
        if kind == "stream":
            return await self.stream(command)
        if kind == "spread":
            return await self.spread(command)
        if kind == "prepare":
            sessions = command["sessions"]
            await self.prepare(sessions, fresh=bool(command.get("fresh", False)))
            return {"prepared": len(sessions)}
        if kind == "seed":
            return await self.seed(command)
        if kind == "grow":
            return await self.grow(command)
        if kind == "finish":
            return {"finished": await self.finish(list(self.messages))}
        raise ValueError(f"unknown command {kind!r}")

    async def prepare(self, sessions: list[str], *, fresh: bool) -> None:
        """Have a streaming reply open in each session.

        Replies left open by an earlier writer are taken over unless ``fresh`` or longer
        than :data:`LONGEST_REPLY` characters; the others are completed and new ones
        started.
        """
        from durable_sessions import service

        unknown = [s for s in sessions if fresh or s not in self.messages]
        if not unknown:
            return
        open_replies = await _streaming_replies(unknown)
        for message_id, session_id, length in open_replies:
            if not fresh and length <= LONGEST_REPLY:
                self.messages[session_id] = message_id
        ended = [m for m, s, _ in open_replies if self.messages.get(s) != m]
        await _complete(ended)
        missing = [s for s in unknown if fresh or s not in self.messages]
        for chunk in range(0, len(missing), 200):
            part = missing[chunk : chunk + 200]
            started = await asyncio.gather(*(service.astart_assistant_message(s) for s in part))
            for session_id, message in zip(part, started, strict=True):
                self.messages[session_id] = message.pk
                self.written[session_id] = 0

    async def roll_over(self, sessions: list[str]) -> None:
        """Complete the replies that grew past :data:`LONGEST_REPLY` and start new ones."""
        long = [s for s in sessions if self.written.get(s, 0) > LONGEST_REPLY]
        if long:
            for session_id in long:
                del self.messages[session_id]  # so that prepare completes it
            await self.prepare(long, fresh=True)

    async def finish(self, sessions: list[str]) -> int:
        """Complete the streaming replies of ``sessions`` (left over ones too)."""
        ended = [m for m, _, _ in await _streaming_replies(sessions)]
        await _complete(ended)
        for session_id in sessions:
            self.messages.pop(session_id, None)
        return len(ended)

    def _sender(self, sessions: list[str]) -> Send:
        from durable_sessions import service

        ids = [uuid.UUID(s) for s in sessions]
        messages = [self.messages[s] for s in sessions]

        async def send(index: int) -> int:
            text = stamped_text()
            self.written[sessions[index]] = self.written.get(sessions[index], 0) + len(text)
            return await service.delta_writer.append(ids[index], messages[index], text)

        return send

    async def stream(self, command: dict[str, Any]) -> dict[str, Any]:
        sessions: list[str] = command["sessions"]
        await self.prepare(sessions, fresh=bool(command.get("fresh", False)))
        await self.roll_over(sessions)
        result = await paced(
            len(sessions),
            self._sender(sessions),
            rate_hz=float(command["rate_hz"]),
            duration=float(command["duration"]),
        )
        return _with_final(result, sessions)

    async def spread(self, command: dict[str, Any]) -> dict[str, Any]:
        sessions: list[str] = command["sessions"]
        await self.prepare(sessions, fresh=bool(command.get("fresh", False)))
        result = await spread(len(sessions), self._sender(sessions), seconds=command["seconds"])
        return _with_final(result, sessions)

    async def seed(self, command: dict[str, Any]) -> dict[str, Any]:
        """Grow a new ``session`` to exactly ``events`` events: replies of ~100 events
        (created, deltas, completed), like a long conversation."""
        from durable_sessions import service

        session_id: str = command["session"]
        sid = uuid.UUID(session_id)
        remaining = int(command["events"]) - 1  # session.created is the first event
        last = 0
        while remaining > 0:
            size = REPLY_EVENTS if remaining >= REPLY_EVENTS + 3 else remaining
            if size < 3:
                raise ValueError("cannot end a session with a reply of fewer than 3 events")
            await self.prepare([session_id], fresh=True)
            message_id = self.messages.pop(session_id)
            await asyncio.gather(
                *(
                    service.delta_writer.append(sid, message_id, FILLER + " ")
                    for _ in range(size - 2)
                )
            )
            last = await service.afinish_assistant_message(message_id)
            remaining -= size
        return {"last_seq": last}

    async def grow(self, command: dict[str, Any]) -> dict[str, Any]:
        """A new reply in ``session`` of ``deltas`` deltas, left streaming (an answer still
        being written, which readers resume)."""
        from durable_sessions import service

        session_id: str = command["session"]
        await self.prepare([session_id], fresh=True)
        message_id = self.messages[session_id]
        sid = uuid.UUID(session_id)
        seqs = await asyncio.gather(
            *(
                service.delta_writer.append(sid, message_id, FILLER + " ")
                for _ in range(int(command["deltas"]))
            )
        )
        return {"message": message_id, "last_seq": max(seqs)}


async def _streaming_replies(sessions: list[str]) -> list[tuple[int, str, int]]:
    """(message id, session id, text length) of the streaming replies in ``sessions``."""
    from channels.db import database_sync_to_async

    from durable_sessions.models import Message, MessageState, Role
    from durable_sessions.service.text import current_content

    def query() -> list[tuple[int, str, int]]:
        rows = Message.objects.filter(
            session_id__in=sessions, role=Role.ASSISTANT, state=MessageState.STREAMING
        )
        # A streaming reply's text is in its deltas until it ends.
        return [(m.pk, str(m.session_id), len(current_content(m))) for m in rows]

    return await database_sync_to_async(query)()


async def _complete(message_ids: list[int]) -> None:
    from durable_sessions import service

    for chunk in range(0, len(message_ids), 200):
        part = message_ids[chunk : chunk + 200]
        await asyncio.gather(*(service.afinish_assistant_message(m) for m in part))


def _with_final(result: dict[str, Any], sessions: list[str]) -> dict[str, Any]:
    last = result.pop("last")
    result["final"] = {s: seq for s, seq in zip(sessions, last, strict=True) if seq is not None}
    return result


async def _main() -> None:
    from bench.protocol import serve

    writer = DurableWriter()
    try:
        await serve(writer.handle)
    finally:
        await writer.finish(list(writer.messages))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    asyncio.run(_main())


if __name__ == "__main__":
    main()
