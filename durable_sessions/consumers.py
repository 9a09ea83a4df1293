"""The websocket transport: a thin adapter from frames to the session service.

Connect: authorize, join the group, send a snapshot, replay the log after the client's
``after_seq``, then forward live events, dropping seqs already sent and re-reading any
gap from the database. See docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from durable_sessions import service, wire
from durable_sessions.adapter import Access, get_adapter, visitor_id
from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery import limits, presence
from durable_sessions.delivery.groups import session_group
from durable_sessions.delivery.publish import EPHEMERAL_MESSAGE_TYPE, LIVE_MESSAGE_TYPE
from durable_sessions.delivery.replay import read_wire
from durable_sessions.delivery.resync import registry
from durable_sessions.errors import RateLimited, ServiceError
from durable_sessions.frames import Frame, FrameError, RateLimiter, parse
from durable_sessions.models import DurableSession, Participant, ParticipantKind
from durable_sessions.service import runs

logger = logging.getLogger(__name__)

# Close codes, sent right after the handshake and before any other frame.
CLOSE_BAD_REQUEST = 4400  # malformed session id or after_seq
CLOSE_FORBIDDEN = 4403  # no such session, or not yours: deliberately indistinguishable


@dataclass
class _Opened:
    session: DurableSession
    access: Access
    participant: Participant | None
    participants: list[Participant]
    agent_status: str


_AFTER_SEQ = re.compile(r"[0-9]{1,18}")  # ASCII digits only: isdigit() accepts "²"


# A replay frame (``events``) holds at most this many characters of events, and at
# most one page (REPLAY_PAGE_SIZE) of them.
BATCH_MAX_CHARS = 256 * 1024


def _batches(rows: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Group ``(seq, text)`` rows into ``events`` frames: ``(last seq, frame text)``."""
    frames: list[tuple[int, str]] = []
    start, size = 0, 0
    for index, (_, text) in enumerate(rows):
        if size and size + len(text) > BATCH_MAX_CHARS:
            frames.append(_batch(rows[start:index]))
            start, size = index, 0
        size += len(text) + 1
    if start < len(rows):
        frames.append(_batch(rows[start:]))
    return frames


def _batch(rows: list[tuple[int, str]]) -> tuple[int, str]:
    return rows[-1][0], '{"type":"events","events":[' + ",".join(t for _, t in rows) + "]}"


class SessionConsumer(AsyncWebsocketConsumer):
    """One client connection (a tab, a phone, an operator's view) to one session."""

    session_id: uuid.UUID
    last_sent: int = 0

    async def connect(self) -> None:
        after = self._parse_connect()
        if after is None:
            await self._refuse(CLOSE_BAD_REQUEST)
            return
        opened = await database_sync_to_async(self._open)()
        if opened is None:
            await self._refuse(CLOSE_FORBIDDEN)
            return
        self.access = opened.access
        try:  # limits per visitor, user and IP (delivery/limits.py)
            who = limits.scope_who(self.scope, exempt=opened.access is Access.OPERATOR)
            self.limit_slot = await limits.aacquire("connection", who, str(self.session_id))
        except RateLimited as refused:
            await self.accept()
            await self._send({"type": "error", **refused.payload()})
            await self.close(code=limits.CLOSE_CODE)
            return
        # The id only: an idle connection need not hold a model instance.
        self.participant_id = opened.participant.pk if opened.participant else None
        self.limiter: RateLimiter | None = None  # made by the first frame: most never send
        self._lock = asyncio.Lock()
        self.group = session_group(self.session_id)
        # Subscribe first, then replay: whatever is committed after this point reaches
        # us live, and whatever came before is in the database.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        session = opened.session
        if after > session.last_seq:
            # The client knows of events this session never had (e.g. a restored
            # database): it must drop its state and start over.
            await self._send({"type": "reset", "last_seq": session.last_seq})
            after = 0
        self._setup_presence(opened)
        entries = await presence.keeper.join(self)
        snapshot = self._snapshot(opened, after)
        snapshot["presence"] = self._presence_frame(entries)
        await self._send(snapshot)
        async with self._lock:
            self.last_sent = after
            registry.add(self.session_id, self)
            await self._catch_up(None)
            await self._send({"type": "live", "last_seq": self.last_sent})

    def _parse_connect(self) -> int | None:
        try:
            self.session_id = uuid.UUID(str(self.scope["url_route"]["kwargs"]["session_id"]))
        except (KeyError, ValueError):
            return None
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        raw = query.get("after_seq", ["0"])[-1]
        batch = query.get("batch", ["0"])[-1]
        if not _AFTER_SEQ.fullmatch(raw) or batch not in ("0", "1"):
            return None
        self.batch = batch == "1"
        return int(raw)

    async def _refuse(self, code: int) -> None:
        # A close code reaches the client only after the handshake completes.
        await self.accept()
        await self.close(code=code)

    def _open(self) -> _Opened | None:
        session = DurableSession.objects.filter(pk=self.session_id).first()
        if session is None:
            return None
        user = self.scope.get("user")
        access = get_adapter().access(session, user, visitor_id(self.scope.get("session")))
        if access is None:
            return None
        # Not through session.participants: each would keep the session row (its
        # related-object cache) alive for as long as the connection holds its participant.
        participants = list(Participant.objects.filter(session_id=session.pk))
        kind = ParticipantKind.CUSTOMER if access is Access.OWNER else ParticipantKind.OPERATOR
        mine = next(
            (
                p
                for p in participants
                if p.kind == kind and (kind == ParticipantKind.CUSTOMER or p.user_id == user.pk)
            ),
            None,
        )
        return _Opened(session, access, mine, participants, runs.agent_status(session.pk))

    def _snapshot(self, opened: _Opened, after: int) -> dict[str, Any]:
        return {
            "type": "snapshot",
            "session": wire.session_data(opened.session),
            "participants": [wire.participant_data(p) for p in opened.participants],
            "agent": {"status": opened.agent_status},
            "you": {
                "access": opened.access.value,
                "participant_id": opened.participant.pk if opened.participant else None,
            },
            "after_seq": after,
        }

    async def disconnect(self, code: int) -> None:
        await limits.arelease(getattr(self, "limit_slot", None))
        if hasattr(self, "group"):
            registry.remove(self.session_id, self)
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if hasattr(self, "presence_entry"):
            await presence.keeper.leave(self)

    # --- presence -------------------------------------------------------------------------

    def _setup_presence(self, opened: _Opened) -> None:
        user = self.scope.get("user")
        is_operator = opened.access is Access.OPERATOR
        self.presence_room = str(self.session_id)
        self.presence_entry = presence.Entry(
            conn=self.channel_name,
            kind=presence.OPERATOR if is_operator else presence.CUSTOMER,
            user_id=user.pk if user is not None and user.is_authenticated else None,
            name=opened.participant.display_name
            if opened.participant
            else get_adapter().display_name(user),
        )
        self._last_presence: dict[str, Any] | None = None

    def _presence_frame(self, entries: list[presence.Entry]) -> dict[str, Any]:
        frame = presence.Frames(entries, time.time()).for_viewer(
            operator=self.access is Access.OPERATOR
        )
        self._last_presence = frame
        return frame

    async def presence_changed(self, frames: presence.Frames) -> None:
        """Send this viewer's presence if it differs from what it last got."""
        frame = frames.for_viewer(operator=self.access is Access.OPERATOR)
        if frame != self._last_presence:
            self._last_presence = frame
            await self._send(frame)
        else:
            self._last_presence = frame  # the session's connections share one copy

    async def session_presence(self, message: dict[str, Any]) -> None:
        entries = presence.load_entries(message["entries"])
        await self.presence_changed(presence.Frames(entries, time.time()))

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Live wake-ups touch the database only on a gap (through database_sync_to_async,
        # which cleans connections itself): skip the per-message connection cleanup that
        # would otherwise put every delivery through the one database thread.
        kind = message.get("type")
        if kind == LIVE_MESSAGE_TYPE:
            await self.session_events(message)
        elif kind == EPHEMERAL_MESSAGE_TYPE:
            await self.session_ephemeral(message)
        elif kind == presence.PRESENCE_MESSAGE_TYPE:
            await self.session_presence(message)
        else:
            await super().dispatch(message)

    # --- delivery -------------------------------------------------------------------------

    async def _send(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=wire.dumps(frame))

    async def _catch_up(self, until: int | None) -> None:
        """Send the committed events after ``last_sent`` (up to ``until``) from the database.

        The next page is read while this one is being sent."""
        page_size = ds_settings.REPLAY_PAGE_SIZE

        def page(after: int) -> Awaitable[list[tuple[int, str]]]:
            return database_sync_to_async(read_wire)(
                self.session_id, after, until=until, limit=page_size
            )

        rows = await page(self.last_sent)
        while rows:
            last = rows[-1][0]
            more = len(rows) == page_size and (until is None or last < until)
            ahead = asyncio.ensure_future(page(last)) if more else None
            try:
                await self._send_rows(rows)
            except BaseException:
                if ahead is not None:
                    ahead.cancel()
                raise
            rows = await ahead if ahead is not None else []

    async def _send_rows(self, rows: list[tuple[int, str]]) -> None:
        if self.batch:
            for last, text in _batches(rows):
                await self.send(text_data=text)
                self.last_sent = last
        else:
            for seq, text in rows:
                await self.send(text_data=text)
                self.last_sent = seq

    async def session_events(self, message: dict[str, Any]) -> None:
        """Live events from the group: forward in seq order, exactly once; then the state
        frames that came with them."""
        async with self._lock:
            for frame in message["events"]:
                seq = frame["seq"]
                if seq <= self.last_sent:
                    continue  # already sent by the replay or a catch-up
                if seq > self.last_sent + 1:
                    await self._catch_up(seq - 1)  # the layer lost something: read the gap
                if seq == self.last_sent + 1:
                    await self._send(frame)
                    self.last_sent = seq
        for ephemeral in message.get("ephemeral", ()):
            await self.session_ephemeral(ephemeral)

    async def session_ephemeral(self, message: dict[str, Any]) -> None:
        """State that is not in the log (agent status): forwarded as it comes, no seq.
        Operator-only frames (e.g. private notes) never reach the customer."""
        if message.get("operators_only") and self.access is not Access.OPERATOR:
            return
        await self._send(message["frame"])

    async def resync(self, last_seq: int) -> None:
        """Called by the per-process check when this connection is behind."""
        async with self._lock:
            if self.last_sent < last_seq:
                await self._catch_up(last_seq)

    # --- client frames --------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            if self.limiter is None:
                self.limiter = RateLimiter()
            if not self.limiter.allow():
                raise FrameError(
                    "rate_limited",
                    f"more than {ds_settings.RATE_LIMIT_FRAMES} frames in "
                    f"{ds_settings.RATE_LIMIT_WINDOW} s; slow down",
                )
            frame = parse(text_data, bytes_data)
            handler = getattr(self, "on_" + frame.type.replace(".", "_"))
            reply = await handler(frame)
        except FrameError as error:
            await self._send(error.as_frame())
            return
        except ServiceError as error:
            await self._send({"type": "error", **error.payload(ref=frame.ref)})
            return
        if reply is not None:
            if frame.ref is not None:
                reply["ref"] = frame.ref
            await self._send(reply)

    async def _participant(self) -> Participant | None:
        if self.participant_id is None:
            return None
        return await Participant.objects.aget(pk=self.participant_id)

    def _require_owner(self, frame: Frame) -> None:
        if self.access is not Access.OWNER:
            raise FrameError(
                "not_allowed", f"{frame.type} is for the session's customer", ref=frame.ref
            )

    async def on_ping(self, frame: Frame) -> dict[str, Any]:
        return {"type": "pong"}

    async def on_message_send(self, frame: Frame) -> dict[str, Any]:
        await limits.acheck("message", self.limit_slot.who)  # refused: nothing stored
        content, client_id = frame.fields["content"], frame.fields["client_id"]
        if self.access is Access.OWNER:
            result = await service.apost_message(
                self.session_id,
                author=await self._participant(),
                content=content,
                client_id=client_id,
            )
        else:
            result = await service.aoperator_reply(
                self.session_id, operator=self.scope["user"], content=content, client_id=client_id
            )
        await presence.keeper.typing(self, False)  # a sent message ends typing
        return {
            "type": "ack",
            "for": frame.type,
            "client_id": client_id,
            "seq": result.seq,
            "duplicate": result.duplicate,
            "message": wire.message_data(result.message),
        }

    async def on_typing(self, frame: Frame) -> None:
        private = frame.fields.get("private", False)
        if private and self.access is not Access.OPERATOR:
            raise FrameError(
                "not_allowed",
                "private: only operators write private notes",
                ref=frame.ref,
                field="private",
            )
        await presence.keeper.typing(self, frame.fields["state"] == "start", private)
        return None

    async def on_handoff_request(self, frame: Frame) -> dict[str, Any]:
        self._require_owner(frame)
        changed = await service.arequest_handoff(
            self.session_id, by=await self._participant(), reason=frame.fields.get("reason", "")
        )
        return {"type": "ack", "for": frame.type, "changed": changed}

    async def on_reply_cancel(self, frame: Frame) -> dict[str, Any]:
        cancelled = await service.acancel_reply(
            self.session_id, reason="user" if self.access is Access.OWNER else "operator"
        )
        return {"type": "ack", "for": frame.type, "cancelled": len(cancelled)}
