"""The websocket transport: a thin adapter from frames to the session service.

Connect: authorize, join the group, send a snapshot, replay the log after the client's
``after_seq``, then forward live events, dropping seqs already sent and re-reading any
gap from the database. See docs/protocol.md.

Every frame goes out through :meth:`SessionConsumer._write`, which waits while the client
has more than ``MAX_SEND_BUFFER_BYTES`` unread (durable_sessions/backpressure.py) and
closes it with 4408 past ``SLOW_CLIENT_TIMEOUT``; a send to a connection that is already
closed is dropped. Whatever way the consumer ends, it leaves its group, the resync
registry and presence (:meth:`SessionConsumer._release`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
)
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError
from django.utils.crypto import constant_time_compare

from durable_sessions import service, wire
from durable_sessions.adapter import Access, get_adapter, visitor_id
from durable_sessions.app_settings import ds_settings
from durable_sessions.backpressure import Flow, PacedFlow, flow_for
from durable_sessions.consumer_app import consumer_app
from durable_sessions.delivery import limits, presence
from durable_sessions.delivery.agent_reads import agent_reads
from durable_sessions.delivery.groups import session_group
from durable_sessions.delivery.publish import EPHEMERAL_MESSAGE_TYPE, LIVE_MESSAGE_TYPE
from durable_sessions.delivery.replay import read_wire_page
from durable_sessions.delivery.resync import registry
from durable_sessions.delivery.revocation import (
    session_key_digest,
    user_group,
)
from durable_sessions.errors import RateLimited, ServiceError
from durable_sessions.frames import Frame, FrameError, RateLimiter, parse
from durable_sessions.middleware import forget_session_data
from durable_sessions.models import DurableSession, Participant, ParticipantKind
from durable_sessions.observability import logs, metrics
from durable_sessions.service import runs
from durable_sessions.tasks import background_task

logger = logging.getLogger(__name__)

# Close codes. 4400 and 4403 come right after the handshake when it is refused; 4403
# also ends a connection whose access is gone. Only these two say "do not retry".
CLOSE_BAD_REQUEST = 4400  # malformed session id or after_seq
CLOSE_REAUTH = 4401  # the Django session the connection was opened with is gone: reconnect
CLOSE_FORBIDDEN = 4403  # no such session, or not yours: deliberately indistinguishable
CLOSE_GONE = 4410  # the session was deleted (erased, or past retention): never retry
CLOSE_TOO_SLOW = 4408  # the client did not read for SLOW_CLIENT_TIMEOUT: resume with after_seq
CLOSE_SERVER_ERROR = 4500  # the server failed while opening the connection: retry later

# Errors that mean "try again": the database or the channel layer is unreachable.
_TRANSIENT: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    OSError,
    TimeoutError,
)
try:
    from redis.exceptions import RedisError

    _TRANSIENT += (RedisError,)
except ImportError:  # pragma: no cover - channels-redis is optional
    pass


class _Gone(Exception):
    """The connection is closed or closing: stop sending to it."""


@dataclass
class _Opened:
    session: DurableSession
    access: Access
    participant: Participant | None
    participants: list[Participant]
    agent: dict[str, Any]
    approvals: list[dict[str, Any]]
    # Messages off the shown branch (edited or regenerated versions): none in a linear one.
    hidden: list[int]


_AFTER_SEQ = re.compile(r"[0-9]{1,18}")  # ASCII digits only: isdigit() accepts "²"


# Events asked for by the first page of a replay; later pages are sized from it.
FIRST_PAGE_EVENTS = 100

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


# Seconds a closing connection waits for each cleanup step (see _release).
CLEANUP_SECONDS = 3.0


class SessionConsumer(AsyncWebsocketConsumer):
    """One client connection (a tab, a phone, an operator's view) to one session."""

    session_id: uuid.UUID
    last_sent: int = 0
    access: Access | None = None
    _flow: Flow
    _task: asyncio.Task[Any] | None = None
    _accepted = False
    _closing = False  # closed, or a close was sent: nothing more goes out
    _released = False
    _joined: tuple[str, ...] = ()  # the channel-layer groups joined
    _access_checked = 0.0  # time.monotonic() of the last access check
    _counted: str | None = None  # the kind it is counted as among open connections
    _agent_frames = 0  # agent.status frames sent
    _agent_last: tuple[Any, ...] | None = None  # the agent's status as last sent (_agent_key)
    _agent_wanted = 0  # seq of the newest event after which the agent's status is re-read
    _agent_checked = 0  # seq of the newest event after which it was re-read
    _agent_task: asyncio.Task[None] | None = None  # the re-reads (see _recheck_soon)

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> Any:
        return consumer_app(cls, **initkwargs)  # no wrapper coroutine per connection

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        # The consumer's one coroutine: no second frame kept while the connection is open.
        return self._serve(scope, receive, send)

    async def _serve(self, scope: Any, receive: Any, send: Any) -> None:
        """Channels' consumer loop (client frames and channel-layer messages to
        :meth:`dispatch`), except that it drops each message once handled: Channels' loop
        keeps the last one, so every idle connection would hold the last presence frame
        or batch of deltas it was sent."""
        self._task = asyncio.current_task()
        self._flow = flow_for(send)
        try:
            self.scope = scope
            self.channel_layer = get_channel_layer(self.channel_layer_alias)
            self.base_send = send
            sources: list[Callable[[], Awaitable[dict[str, Any]]]] = [receive]
            if self.channel_layer is not None:
                self.channel_name = await self.channel_layer.new_channel()
                self.channel_receive = partial(self.channel_layer.receive, self.channel_name)
                sources.append(self.channel_receive)
            waiting = [asyncio.ensure_future(source()) for source in sources]
            try:
                while True:
                    await _any_done(waiting)
                    for index, source in enumerate(sources):
                        if waiting[index].done():
                            message = waiting[index].result()
                            await self.dispatch(message)
                            del message
                            waiting[index] = asyncio.ensure_future(source())
            finally:
                for task in waiting:
                    task.cancel()
                await asyncio.gather(*waiting, return_exceptions=True)
        except StopConsumer:
            pass  # the client left, or the consumer closed
        finally:
            # Whatever ended the consumer (a disconnect, an error, Daphne cancelling it):
            # no group, registry or presence entry outlives it.
            await self._release()

    async def connect(self) -> None:
        try:
            await self._connect()
        except _Gone:
            pass  # the client left, or was too slow, during the replay: disconnect follows
        except Exception as error:
            ref = _incident()
            logger.error(
                "websocket connect to session %s failed (%s): %s",
                getattr(self, "session_id", "?"),
                ref,
                _describe(error),
            )
            await self._refuse(CLOSE_SERVER_ERROR)  # before the release, which ends sending
            await self._release()

    async def _connect(self) -> None:
        after = self._parse_connect()
        if after is None:
            await self._refuse(CLOSE_BAD_REQUEST)
            return
        logs.bind(session_id=self.session_id)
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
        self._access_checked = time.monotonic()
        forget_session_data(self.scope)  # read by now: an idle connection need not hold it
        # The id only: an idle connection need not hold a model instance.
        self.participant_id = opened.participant.pk if opened.participant else None
        logs.bind(participant=self.participant_id)
        self.limiter: RateLimiter | None = None  # made by the first frame: most never send
        self._lock = asyncio.Lock()
        # Interned: the connections of one session share one copy of each name.
        self.group = sys.intern(session_group(self.session_id))
        user = self.scope.get("user")
        groups = [self.group]
        if user is not None and user.is_authenticated:
            groups.append(user_group(user.pk))  # logout and revocations reach it there
        # Subscribe first, then replay: whatever is committed after this point reaches
        # us live, and whatever came before is in the database.
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self._joined += (group,)
        await self._accept()
        self._counted = metrics.connection_opened(_KINDS[opened.access])
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
        self._agent_last = _agent_key(opened.agent)
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

    async def _accept(self) -> None:
        if not self._accepted:
            self._accepted = True
            try:
                await self.accept()
            except Exception as error:  # the client left during the handshake
                self._closing = True
                raise _Gone from error

    async def _refuse(self, code: int) -> None:
        # A close code reaches the client only after the handshake completes.
        try:
            await self._accept()
        except _Gone:
            return
        await self._close_quietly(code)

    async def _close_quietly(self, code: int) -> None:
        if self._closing:
            return
        self._closing = True
        try:
            await self.close(code=code)
        except Exception:  # already closed by the client: nothing to tell it
            logger.debug("close %s on a closed connection dropped", code)

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
        approvals = [
            {"message_id": p.message_id, "part": wire.part_data(p)}
            for p in service.pending_approvals(session.pk)
        ]
        hidden = service.hidden_ids(session.pk)
        agent = runs.agent_state(session.pk)
        return _Opened(session, access, mine, participants, agent, approvals, hidden)

    def _snapshot(self, opened: _Opened, after: int) -> dict[str, Any]:
        return {
            "type": "snapshot",
            "session": wire.session_data(opened.session),
            "participants": [wire.participant_data(p) for p in opened.participants],
            "agent": opened.agent,
            # Tool calls waiting for an answer (also in the log): shown before any replay.
            "approvals": opened.approvals,
            # The shown branch: every message not listed here is on it.
            "branches": {"hidden": opened.hidden},
            "you": {
                "access": opened.access.value,
                "participant_id": opened.participant.pk if opened.participant else None,
            },
            "after_seq": after,
        }

    async def disconnect(self, code: int) -> None:
        await self._release()

    async def _release(self) -> None:
        """Leave the groups, the resync registry, presence and the connection limit; once,
        on any exit path."""
        if self._released:
            return
        self._released = True
        self._closing = True
        metrics.connection_closed(self._counted)
        if self._agent_task is not None:
            self._agent_task.cancel()
        if hasattr(self, "group"):
            registry.remove(self.session_id, self)
        steps: list[Awaitable[Any]] = [
            self.channel_layer.group_discard(group, self.channel_name) for group in self._joined
        ]
        if hasattr(self, "presence_entry"):
            steps.append(presence.keeper.leave(self))
        steps.append(limits.arelease(getattr(self, "limit_slot", None)))
        # All at once and bounded: with Redis away each step could wait for its socket
        # timeout, and Daphne kills a consumer that takes 10 s to close. What is not
        # cleaned up here (group membership, presence, the slot) expires on its own.
        results = await asyncio.gather(
            *(asyncio.wait_for(step, CLEANUP_SECONDS) for step in steps), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception):
                logger.warning("cleanup of a closed connection failed: %s", _describe(result))

    # --- presence -------------------------------------------------------------------------

    def _setup_presence(self, opened: _Opened) -> None:
        user = self.scope.get("user")
        is_operator = opened.access is Access.OPERATOR
        self.presence_room = sys.intern(str(self.session_id))
        self.presence_entry = presence.Entry(
            conn=self.channel_name,
            kind=presence.OPERATOR if is_operator else presence.CUSTOMER,
            user_id=user.pk if user is not None and user.is_authenticated else None,
            name=opened.participant.display_name
            if opened.participant
            else get_adapter().operator_name(user)
            if is_operator
            else get_adapter().display_name(user),
        )
        self._last_presence: dict[str, Any] | None = None

    def presence_alive(self) -> bool:
        """Whether this connection's presence entry may be renewed."""
        return not self._released and self._task is not None and not self._task.done()

    def _presence_frame(self, entries: list[presence.Entry]) -> dict[str, Any]:
        frame = presence.Frames(entries, time.time()).for_viewer(
            operator=self.access is Access.OPERATOR
        )
        self._last_presence = frame
        return frame

    async def presence_changed(self, frames: presence.Frames) -> None:
        """Send this viewer's presence if it differs from what it last got.

        Never waits for a slow reader (the keeper's sweep calls every connection in
        turn): a frame that does not fit is left to a later sweep."""
        frame = frames.for_viewer(operator=self.access is Access.OPERATOR)
        if frame != self._last_presence:
            if await self._write_now(wire.dumps(frame)):
                self._last_presence = frame
        else:
            self._last_presence = frame  # the session's connections share one copy

    async def session_presence(self, message: dict[str, Any]) -> None:
        entries = presence.load_entries(message["entries"])
        presence.keeper.pushed(self.presence_room, entries)
        await self.presence_changed(presence.Frames(entries, time.time()))

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Live wake-ups touch the database only on a gap (through database_sync_to_async,
        # which cleans connections itself): skip the per-message connection cleanup that
        # would otherwise put every delivery through the one database thread.
        kind = message.get("type")
        try:
            if kind == LIVE_MESSAGE_TYPE:
                await self.session_events(message)
            elif kind == EPHEMERAL_MESSAGE_TYPE:
                await self.session_ephemeral(message)
            elif kind == presence.PRESENCE_MESSAGE_TYPE:
                await self.session_presence(message)
            else:
                await super().dispatch(message)
        except StopConsumer:
            raise
        except _Gone:
            pass  # a send to a closed connection was dropped: its disconnect follows
        except Exception as error:
            # A live delivery that failed (e.g. a gap re-read while the database is
            # away) is made good by the resync check: log it, keep the connection.
            logger.warning(
                "handling %s on a connection to session %s failed: %s",
                kind,
                getattr(self, "session_id", "?"),
                _describe(error),
            )

    # --- delivery -------------------------------------------------------------------------

    async def _write(self, text: str) -> None:
        """Send one frame once the client has read enough of the previous ones."""
        if self._closing:
            raise _Gone
        limit = ds_settings.MAX_SEND_BUFFER_BYTES
        if not await self._flow.wait_writable(limit, ds_settings.SLOW_CLIENT_TIMEOUT):
            logger.info(
                "closing a connection to session %s that stopped reading (%s)",
                self.session_id,
                CLOSE_TOO_SLOW,
            )
            await self._close_quietly(CLOSE_TOO_SLOW)
            raise _Gone
        await self._send_now(text)

    async def _write_now(self, text: str) -> bool:
        """Send one frame only if the client keeps up; False when it was left out."""
        if self._closing or not await self._flow_allows():
            return False
        try:
            await self._send_now(text)
        except _Gone:
            return False
        return True

    async def _flow_allows(self) -> bool:
        flow = self._flow
        if isinstance(flow, PacedFlow):
            return True  # pacing is for replays; an ephemeral frame is small
        return await flow.wait_writable(ds_settings.MAX_SEND_BUFFER_BYTES, 0)

    async def _send_now(self, text: str) -> None:
        if self._closing or self._flow.closed():
            self._closing = True
            raise _Gone
        try:
            await self.send(text_data=text)
        except Exception as error:
            # Daphne raises when the client closed in the meantime ("Attempt to send on
            # a closed protocol"): drop the frame; the disconnect follows.
            self._closing = True
            raise _Gone from error
        self._flow.sent(len(text))

    async def _send(self, frame: dict[str, Any]) -> None:
        await self._write(wire.dumps(frame))

    async def _catch_up(self, until: int | None) -> None:
        """Send the committed events after ``last_sent`` (up to ``until``) from the database.

        Pages hold at most ``REPLAY_PAGE_SIZE`` events and about ``REPLAY_PAGE_BYTES``;
        the next page is read while this one is being sent. Each page asks for about twice
        the events that fit, judged by the previous page, so that the database does not
        build a thousand large events to return a few of them."""
        page_size = ds_settings.REPLAY_PAGE_SIZE
        max_chars = ds_settings.REPLAY_PAGE_BYTES

        def page(after: int, limit: int) -> Awaitable[tuple[list[tuple[int, str]], bool]]:
            return database_sync_to_async(read_wire_page)(
                self.session_id, after, until=until, limit=limit, max_chars=max_chars
            )

        limit = min(page_size, FIRST_PAGE_EVENTS)
        rows, more = await page(self.last_sent, limit)
        while rows:
            metrics.replay_page(len(rows))
            last = rows[-1][0]
            average = sum(len(text) for _, text in rows) / len(rows)
            limit = max(1, min(page_size, int(2 * max_chars / average)))
            ahead = asyncio.ensure_future(page(last, limit)) if more else None
            try:
                await self._send_rows(rows)
            except BaseException:
                if ahead is not None:
                    ahead.cancel()
                raise
            rows, more = await ahead if ahead is not None else ([], False)

    async def _send_rows(self, rows: list[tuple[int, str]]) -> None:
        if self.batch:
            for last, text in _batches(rows):
                await self._write(text)
                self.last_sent = last
        else:
            for seq, text in rows:
                await self._write(text)
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
                    gap_from = self.last_sent
                    await self._catch_up(seq - 1)  # the layer lost something: read the gap
                    metrics.recovered("gap", self.last_sent - gap_from)
                if seq == self.last_sent + 1:
                    await self._send(frame)
                    self.last_sent = seq
            recheck = any(f["type"] in _AGENT_CHANGES for f in message["events"])
        metrics.delivered(message["events"])
        ephemerals = message.get("ephemeral", ())
        for ephemeral in ephemerals:
            await self.session_ephemeral(ephemeral)
        # A status frame that came (to everyone) in the same message as the events is the
        # status they left: nothing to re-read.
        if recheck and not any(
            e["frame"].get("type") == "agent.status" and not e.get("operators_only")
            for e in ephemerals
        ):
            self._recheck_soon(message["events"][-1]["seq"])

    def _recheck_soon(self, seq: int) -> None:
        """Re-read the agent's status after event ``seq``, beside the delivery: a read
        waits for the process's one database thread, and the events that follow must not
        wait with it. One re-read at a time per connection; requests made meanwhile are
        served by one more read after it."""
        self._agent_wanted = max(self._agent_wanted, seq)
        if self._agent_task is None or self._agent_task.done():
            self._agent_task = background_task(self._rechecks())

    async def _rechecks(self) -> None:
        while self._agent_wanted > self._agent_checked and not self._closing:
            seq = self._agent_checked = self._agent_wanted
            try:
                await self._recheck_agent(seq)
            except _Gone:
                return
            except Exception as error:  # the next event that changes the status tries again
                logger.warning(
                    "agent status of session %s not re-read: %s", self.session_id, _describe(error)
                )
                return

    async def _recheck_agent(self, seq: int) -> None:
        """Re-read the agent's status after event ``seq`` (which may change it) and send it
        if it is not what this connection last sent: a lost status frame (the layer may
        drop it) does not leave the client showing "streaming" until it reconnects."""
        sent_before = self._agent_frames
        state = await agent_reads.state(self.session_id, seq, runs.agent_state)
        if self._agent_frames != sent_before or _agent_key(state) == self._agent_last:
            return  # a newer status frame went out meanwhile, or nothing changed
        await self._send_agent(service.agent_status_frame(**_frame_args(state)))

    async def _send_agent(self, frame: dict[str, Any]) -> None:
        self._agent_frames += 1
        self._agent_last = _agent_key(frame)
        await self._send(frame)

    async def session_ephemeral(self, message: dict[str, Any]) -> None:
        """State that is not in the log (agent status): forwarded as it comes, no seq.
        Operator-only frames (e.g. private notes) never reach the customer."""
        if message.get("operators_only") and self.access is not Access.OPERATOR:
            return
        if message["frame"].get("type") == "agent.status":
            await self._send_agent(message["frame"])
            return
        await self._send(message["frame"])

    async def resync(self, last_seq: int) -> None:
        """Called by the per-process check when this connection is behind."""
        if self._closing or self._lock.locked():
            return  # gone, or already sending: whoever holds the lock catches up
        try:
            async with self._lock:
                behind = self.last_sent < last_seq
                if behind:
                    before = self.last_sent
                    await self._catch_up(last_seq)
                    metrics.recovered("resync", self.last_sent - before)
            if behind:
                await self._recheck_agent(self.last_sent)
        except _Gone:
            pass
        except Exception as error:  # the next check tries again
            logger.warning("resync of session %s failed: %s", self.session_id, _describe(error))

    # --- access ---------------------------------------------------------------------------

    async def session_logout(self, message: dict[str, Any]) -> None:
        """The user logged out: close the connections opened with that Django session."""
        key = getattr(self.scope.get("session"), "session_key", None)
        if not key or secrets.compare_digest(session_key_digest(key), message["session"]):
            logger.info("closing a connection to session %s: logged out", self.session_id)
            await self._close_quietly(CLOSE_FORBIDDEN)

    async def session_removed(self, message: dict[str, Any]) -> None:
        """The session was deleted: nothing of it may be sent any more."""
        logger.info("closing a connection to session %s: deleted", self.session_id)
        await self._close_quietly(CLOSE_GONE)

    async def session_access(self, message: dict[str, Any]) -> None:
        """The user's permissions or account changed: re-read access now."""
        await self._check_access(force=True)

    async def _check_access(self, *, force: bool = False) -> bool:
        """Re-read access when the last check is older than ``RECHECK_ACCESS_SECONDS``;
        close the connection (and return False) when it is gone."""
        if self.access is None or self._closing:
            return False
        now = time.monotonic()
        if not force and now - self._access_checked < ds_settings.RECHECK_ACCESS_SECONDS:
            return True
        code = await database_sync_to_async(self._access_lost)()
        if code is None:
            self._access_checked = now
            return True
        logger.info("closing a connection to session %s: access gone (%s)", self.session_id, code)
        await self._close_quietly(code)
        return False

    def _access_lost(self) -> int | None:
        """None while the connection's access holds; else the close code."""
        session = DurableSession.objects.filter(pk=self.session_id).first()
        if session is None:
            return CLOSE_FORBIDDEN
        user, visitor, vanished = self._current_identity()
        if get_adapter().access(session, user, visitor) is self.access:
            return None
        return CLOSE_REAUTH if vanished else CLOSE_FORBIDDEN

    def _current_identity(self) -> tuple[Any, str | None, bool]:
        """The user and visitor as the connection's Django session says now, and whether
        that Django session is gone (logged out elsewhere, expired, or renewed at login)."""
        store = self.scope.get("session")
        key = getattr(store, "session_key", None)
        if store is not None and key:
            fresh = store.__class__(session_key=key)
            user_id = fresh.get(SESSION_KEY)  # loads it: a missing session clears the key
            if not fresh.session_key:
                return AnonymousUser(), None, True
            return _session_user(fresh, user_id), visitor_id(fresh), False
        scope_user = self.scope.get("user")
        if scope_user is None or not scope_user.is_authenticated:
            return scope_user, visitor_id(store), False
        # A user put in the scope without a Django session (custom middleware, tests).
        user = get_user_model()._default_manager.filter(pk=scope_user.pk).first()
        if user is None or not user.is_active:
            user = AnonymousUser()
        return user, visitor_id(store), False

    # --- client frames --------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self._closing or self.access is None:
            return  # refused, or closing: frames still in flight are ignored
        frame: Frame | None = None
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
            if frame.type in _STATE_CHANGING and not await self._check_access():
                return
            handler = getattr(self, "on_" + frame.type.replace(".", "_"))
            reply = await handler(frame)
        except FrameError as error:
            metrics.frame_rejected(error.code)
            await self._send(error.as_frame())
            return
        except ServiceError as error:
            metrics.frame_rejected(error.code)
            await self._send(
                {"type": "error", **error.payload(ref=frame.ref if frame is not None else None)}
            )
            return
        except _Gone:
            raise
        except Exception as error:
            await self._send(self._failure_frame(frame, error))
            return
        if reply is not None:
            if frame.ref is not None:
                reply["ref"] = frame.ref
            await self._send(reply)

    def _failure_frame(self, frame: Frame | None, error: Exception) -> dict[str, Any]:
        """The ``error`` frame for a failure of the server itself; one log line."""
        transient = isinstance(error, _TRANSIENT)
        code = "unavailable" if transient else "internal_error"
        metrics.frame_rejected(code)
        incident = _incident()
        logger.error(
            "%s frame on session %s failed, %s %s: %s",
            frame.type if frame is not None else "a",
            self.session_id,
            code,
            incident,
            _describe(error),
        )
        reply: dict[str, Any] = {
            "type": "error",
            "code": code,
            "message": "the server could not do this now; send it again"
            if transient
            else "the server failed to handle this frame",
            "incident": incident,
        }
        if frame is not None and frame.ref is not None:
            reply["ref"] = frame.ref
        return reply

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
        mode = frame.fields.get("mode")
        if self.access is Access.OWNER:
            result = await service.apost_message(
                self.session_id,
                author=await self._participant(),
                content=content,
                client_id=client_id,
                mode=mode,
            )
        else:
            if mode is not None:
                raise FrameError(
                    "invalid_field",
                    "mode: only the customer's messages steer or interrupt the agent",
                    ref=frame.ref,
                    field="mode",
                )
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
            "mode": result.mode,
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

    async def on_session_rate(self, frame: Frame) -> dict[str, Any]:
        self._require_owner(frame)
        result = await service.arate_session(
            self.session_id,
            by=await self._participant(),
            score=frame.fields["score"],
            comment=frame.fields.get("comment", ""),
        )
        return {
            "type": "ack",
            "for": frame.type,
            "changed": result.changed,
            "rating": wire.rating_data(result.rating),
        }

    async def on_approval_answer(self, frame: Frame) -> dict[str, Any]:
        fields = frame.fields
        result = await service.aanswer_approval(
            self.session_id,
            fields["approval_id"],
            approved=fields["approved"],
            operator=self.scope["user"] if self.access is Access.OPERATOR else None,
            reason=fields.get("reason", ""),
            client_id=fields["client_id"],
        )
        return {
            "type": "ack",
            "for": frame.type,
            "client_id": fields["client_id"],
            "approval_id": fields["approval_id"],
            "seq": result.seq,
            "duplicate": result.duplicate,
            "decision": result.part.decision,
        }

    async def on_message_edit(self, frame: Frame) -> dict[str, Any]:
        self._require_owner(frame)
        await limits.acheck("message", self.limit_slot.who)  # an edit is a message
        fields = frame.fields
        result = await service.aedit_message(
            self.session_id, fields["message_id"], fields["content"], client_id=fields["client_id"]
        )
        return {
            "type": "ack",
            "for": frame.type,
            "client_id": fields["client_id"],
            "seq": result.seq,
            "duplicate": result.duplicate,
            "message": wire.message_data(result.message),
        }

    async def on_reply_regenerate(self, frame: Frame) -> dict[str, Any]:
        self._require_owner(frame)
        await limits.acheck("message", self.limit_slot.who)  # it starts a run, as a message
        hidden = await service.aregenerate(self.session_id, frame.fields["message_id"])
        return {"type": "ack", "for": frame.type, "hidden": hidden}

    async def on_branch_switch(self, frame: Frame) -> dict[str, Any]:
        self._require_owner(frame)
        changed = await service.aswitch_branch(self.session_id, frame.fields["message_id"])
        return {"type": "ack", "for": frame.type, "changed": changed}

    async def on_reply_cancel(self, frame: Frame) -> dict[str, Any]:
        cancelled = await service.acancel_reply(
            self.session_id, reason="user" if self.access is Access.OWNER else "operator"
        )
        return {"type": "ack", "for": frame.type, "cancelled": len(cancelled)}


# How open connections are counted (the console's feed counts as "console").
_KINDS = {Access.OWNER: "customer", Access.OPERATOR: "operator"}

# Frames that change the session: access is re-read before them.
_STATE_CHANGING = frozenset(
    {
        "message.send",
        "handoff.request",
        "reply.cancel",
        "approval.answer",
        "message.edit",
        "reply.regenerate",
        "branch.switch",
        "session.rate",
    }
)
# Log events after which the agent's status is re-read (its frame may have been lost).
_AGENT_CHANGES = frozenset(
    {
        wire.MESSAGE_COMPLETED,
        wire.MESSAGE_CANCELLED,
        wire.MESSAGE_FAILED,
        wire.CONTROL_CHANGED,
        wire.SESSION_CLOSED,
        wire.TOOL_UPDATED,
        wire.RUN_RETRYING,
        wire.BRANCH_SWITCHED,
    }
)


async def _any_done(tasks: list[asyncio.Future[Any]]) -> None:
    """Return once one of ``tasks`` is done: ``asyncio.wait(..., FIRST_COMPLETED)``
    without the sets it builds and takes apart on every call. The consumer loop waits once
    per message it handles, which makes that a measurable share of a live delivery."""
    for task in tasks:
        if task.done():
            return
    wake = asyncio.get_running_loop().create_future()

    def ready(_: Any) -> None:
        if not wake.done():
            wake.set_result(None)

    for task in tasks:
        task.add_done_callback(ready)
    try:
        await wake
    finally:
        for task in tasks:
            task.remove_done_callback(ready)


def _agent_key(state: dict[str, Any]) -> tuple[Any, ...]:
    """What an idle connection keeps of the agent's status: a small tuple, not a dict."""
    return state.get("status"), state.get("tool"), state.get("run_id")


def _frame_args(state: dict[str, Any]) -> dict[str, Any]:
    return {"status": state["status"], "run_id": state["run_id"], "tool": state["tool"]}


def _session_user(store: Any, user_id: Any) -> Any:
    """The user a Django session names, verified as Django verifies it for a request
    (backend, ``is_active`` through the backend, the password hash), without changing
    the session: a websocket cannot send the browser a new cookie."""
    backend_path = store.get(BACKEND_SESSION_KEY)
    if user_id is None or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return AnonymousUser()
    user_model = get_user_model()
    try:
        user = load_backend(backend_path).get_user(user_model._meta.pk.to_python(user_id))
    except ValidationError:
        user = None
    if user is None:
        return AnonymousUser()
    if hasattr(user, "get_session_auth_hash"):
        stored = store.get(HASH_SESSION_KEY) or ""
        hashes = [user.get_session_auth_hash()]
        make = getattr(user, "_get_session_auth_hash", None)
        if make is not None:
            hashes += [make(secret=s) for s in settings.SECRET_KEY_FALLBACKS]
        if not stored or not any(constant_time_compare(stored, h) for h in hashes):
            return AnonymousUser()
    return user


def _incident() -> str:
    """A short id that ties what the client was told to the server's log line."""
    return secrets.token_hex(4)


def _describe(error: BaseException) -> str:
    """One line for the log: the class and the start of the message."""
    text = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
