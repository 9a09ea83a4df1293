"""Presence and typing: who is here, on how many devices, and who is typing.

Presence is ephemeral state, never part of the event log. Each connection holds an
entry with an expiry that its process refreshes every ``PRESENCE_HEARTBEAT`` seconds;
an entry whose process died (``kill -9``, a vanished phone) simply expires after
``PRESENCE_TTL``. Entries live in process memory (one process) or in Redis (several).
Changes are pushed to the session's group, coalesced per ``PRESENCE_COALESCE_MS``;
each process also re-reads the presence of its sessions every ``PRESENCE_SWEEP``
seconds, which is how expiries (and any lost push) reach the clients. Typing carries
no text: unsent words never leave the customer's device.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from channels.layers import get_channel_layer
from django.conf import settings
from django.utils.module_loading import import_string

from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.groups import session_group
from durable_sessions.observability import metrics
from durable_sessions.tasks import background_task

logger = logging.getLogger(__name__)

PRESENCE_MESSAGE_TYPE = "session.presence"
CUSTOMER, OPERATOR = "customer", "operator"


@dataclass(slots=True)
class Entry:
    """One connection's presence."""

    conn: str
    kind: str  # CUSTOMER or OPERATOR
    user_id: int | None
    name: str
    typing_until: float = 0.0
    private: bool = False  # an operator typing a private note
    expires: float = 0.0

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes) -> Entry:
        entry = cls(**json.loads(raw))
        entry.share_strings()
        return entry

    def share_strings(self) -> None:
        """Intern the strings: the keeper holds each local connection's entry twice (its
        own and the last one read from the store), and many share a kind and a name."""
        self.conn, self.kind, self.name = map(_shared, (self.conn, self.kind, self.name))


def _shared(value: Any) -> Any:
    return sys.intern(value) if type(value) is str else value


def conn_tag(conn: str) -> str:
    """A short digest of a connection's name: pushes say who is still here without
    carrying the names of other processes' channels."""
    return hashlib.blake2s(conn.encode(), digest_size=6).hexdigest()


def dump_entries(entries: list[Entry]) -> str:
    """What a presence push carries: the fields :func:`render` reads and each entry's
    :func:`conn_tag`, as compact JSON."""
    return json.dumps(
        [[e.kind, e.user_id, e.name, e.typing_until, e.private, conn_tag(e.conn)] for e in entries],
        separators=(",", ":"),
    )


def load_entries(raw: str) -> list[Entry]:
    """The entries of a push; their ``conn`` is the tag (empty from an older process)."""
    return [
        Entry(row[5] if len(row) > 5 else "", *row[:5])  # kind, user_id, name, typing, private
        for row in json.loads(raw)
    ]


def render(entries: list[Entry], *, for_operator: bool, now: float) -> dict[str, Any]:
    """The presence frame one viewer gets; customers never see private-note typing."""
    customers = [e for e in entries if e.kind == CUSTOMER]
    operators: dict[Any, list[Entry]] = {}
    for entry in entries:
        if entry.kind == OPERATOR:
            operators.setdefault(entry.user_id, []).append(entry)
    people = []
    for user_id, devices in operators.items():
        typing = [e for e in devices if e.typing_until > now]
        person: dict[str, Any] = {
            "user_id": user_id,
            "display_name": devices[0].name,
            "devices": len(devices),
            "typing": any(not e.private for e in typing),
        }
        if for_operator:
            person["writing_note"] = any(e.private for e in typing)
        people.append(person)
    people.sort(key=lambda p: (p["display_name"], p["user_id"] or 0))
    return {
        "type": "presence",
        "customer": {
            "online": bool(customers),
            "devices": len(customers),
            "typing": any(e.typing_until > now for e in customers),
        },
        "operators": people,
    }


class Frames:
    """The presence frames of one session's entries, rendered once per kind of viewer:
    the connections of a session share them."""

    __slots__ = ("_entries", "_now", "_rendered")

    def __init__(self, entries: list[Entry], now: float) -> None:
        self._entries = entries
        self._now = now
        self._rendered: dict[bool, dict[str, Any]] = {}

    def for_viewer(self, *, operator: bool) -> dict[str, Any]:
        frame = self._rendered.get(operator)
        if frame is None:
            frame = self._rendered[operator] = render(
                self._entries, for_operator=operator, now=self._now
            )
        return frame


# Seconds an entry missing from the store without a pushed leave is still shown.
MISSING_GRACE = 5.0
# Sessions per Redis pipeline in a sweep.
PIPELINE_CHUNK = 500
# Connections a sweep updates before it yields to the event loop.
SWEEP_SLICE = 200


class PresenceStore(Protocol):
    async def put(self, session: str, entries: list[Entry]) -> None: ...
    async def put_many(self, entries: dict[str, list[Entry]]) -> None: ...
    async def remove(self, session: str, conn: str) -> None: ...
    async def read(self, sessions: list[str]) -> dict[str, list[Entry]]: ...


class MemoryStore:
    """Presence of one process."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, Entry]] = {}

    async def put(self, session: str, entries: list[Entry]) -> None:
        bucket = self._data.setdefault(session, {})
        for entry in entries:
            bucket[entry.conn] = entry

    async def put_many(self, entries: dict[str, list[Entry]]) -> None:
        for session, items in entries.items():
            await self.put(session, items)

    async def remove(self, session: str, conn: str) -> None:
        bucket = self._data.get(session)
        if bucket is not None:
            bucket.pop(conn, None)
            if not bucket:
                del self._data[session]

    async def read(self, sessions: list[str]) -> dict[str, list[Entry]]:
        now = time.time()
        found = {}
        for session in sessions:
            bucket = self._data.get(session, {})
            for conn in [c for c, e in bucket.items() if e.expires <= now]:
                del bucket[conn]
            found[session] = list(bucket.values())
        return found


class RedisStore:
    """Presence shared by processes: one hash per session, entries carry their expiry."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _redis(self) -> Any:
        import redis.asyncio as aioredis

        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # A blocking pool waits for a free connection instead of failing past its cap.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url, max_connections=50, timeout=10, socket_timeout=10
            )
            self._client = aioredis.Redis(connection_pool=pool)
            self._loop = loop
        return self._client

    @staticmethod
    def key(session: str) -> str:
        return f"{ds_settings.GROUP_PREFIX}:presence:{session}"

    async def put(self, session: str, entries: list[Entry]) -> None:
        await self.put_many({session: entries})

    async def put_many(self, entries: dict[str, list[Entry]]) -> None:
        """Write the entries of many sessions, a few round trips in all."""
        ttl = int(ds_settings.PRESENCE_TTL * 3) + 1  # whole seconds for EXPIRE
        items = [(session, found) for session, found in entries.items() if found]
        for start in range(0, len(items), PIPELINE_CHUNK):
            async with self._redis().pipeline(transaction=False) as pipe:
                for session, found in items[start : start + PIPELINE_CHUNK]:
                    key = self.key(session)
                    pipe.hset(key, mapping={e.conn: e.dumps() for e in found})
                    pipe.expire(key, ttl)  # abandoned keys vanish on their own
                await pipe.execute()

    async def remove(self, session: str, conn: str) -> None:
        await self._redis().hdel(self.key(session), conn)

    async def read(self, sessions: list[str]) -> dict[str, list[Entry]]:
        results: list[dict[Any, Any]] = []
        for start in range(0, len(sessions), PIPELINE_CHUNK):
            async with self._redis().pipeline(transaction=False) as pipe:
                for session in sessions[start : start + PIPELINE_CHUNK]:
                    pipe.hgetall(self.key(session))
                results += await pipe.execute()
        now = time.time()
        found: dict[str, list[Entry]] = {}
        expired: list[tuple[str, str]] = []
        for session, raw in zip(sessions, results, strict=True):
            entries = []
            for conn, value in raw.items():
                entry = Entry.loads(value)
                if entry.expires > now:
                    entries.append(entry)
                else:
                    expired.append((session, conn.decode() if isinstance(conn, bytes) else conn))
            found[session] = entries
        if expired:
            async with self._redis().pipeline(transaction=False) as pipe:
                for session, conn in expired:
                    pipe.hdel(self.key(session), conn)
                await pipe.execute()
        return found


def _is_redis_layer(path: str) -> bool:
    """Whether the layer class at ``path`` is (a subclass of) one of channels-redis'."""
    try:
        from channels_redis.core import RedisChannelLayer
        from channels_redis.pubsub import RedisPubSubChannelLayer
    except ImportError:  # the "redis" extra is not installed
        return False
    try:
        layer = import_string(path)
    except ImportError:
        return False
    return isinstance(layer, type) and issubclass(
        layer, (RedisChannelLayer, RedisPubSubChannelLayer)
    )


def _layer_redis_url() -> str | None:
    config = settings.CHANNEL_LAYERS.get("default", {})
    if not _is_redis_layer(config.get("BACKEND", "")):
        return None
    hosts = config.get("CONFIG", {}).get("hosts") or ["redis://127.0.0.1:6379"]
    host = hosts[0]
    if isinstance(host, dict):
        return host.get("address")
    if isinstance(host, (tuple, list)):
        return f"redis://{host[0]}:{host[1]}"
    return str(host)


def state_redis_url() -> str | None:
    """Where ephemeral state shared by processes (presence, the limits) is kept: a Redis
    URL, or None for this process's memory (``PRESENCE_BACKEND``)."""
    backend = ds_settings.PRESENCE_BACKEND
    url = ds_settings.PRESENCE_REDIS_URL or _layer_redis_url()
    if backend == "redis" or (backend == "auto" and url):
        if not url:
            raise RuntimeError("PRESENCE_BACKEND is 'redis' but no Redis URL is known")
        return url
    return None


def make_store() -> PresenceStore:
    url = state_redis_url()
    return RedisStore(url) if url else MemoryStore()


class Present(Protocol):
    """A connection that takes part in presence (the websocket consumer)."""

    presence_room: str  # the conversation's id: one room per session
    presence_entry: Entry

    async def presence_changed(self, frames: Frames) -> None: ...

    def presence_alive(self) -> bool:
        """False once the connection is gone: its entry is then no longer renewed."""
        ...


class CoalescedPushes:
    """At most one pending push per session: changes while it waits ride along with it."""

    def __init__(self) -> None:
        self._due: dict[str, asyncio.Task[None]] = {}

    def schedule(self, room: str, delay: float, push: Callable[[str], Awaitable[None]]) -> None:
        task = self._due.get(room)
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            return  # the pending push reads the store when it goes: it carries this change
        self._due[room] = background_task(self._later(room, delay, push))

    async def _later(self, room: str, delay: float, push: Callable[[str], Awaitable[None]]) -> None:
        await asyncio.sleep(delay)
        # Before reading: a change from now on schedules the next push, so the last
        # state always goes out.
        self._due.pop(room, None)
        try:
            await push(room)
        except Exception:
            logger.exception("presence push failed; the next sweep corrects it")


class PresenceKeeper:
    """This process's connections: joins, leaves, typing, heartbeats and expiry checks."""

    def __init__(self) -> None:
        self._store: PresenceStore | None = None
        self._local: dict[str, set[Present]] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_heartbeat = 0.0
        self._pushes = CoalescedPushes()
        # The last entries known of each local session (from the store or a push), and
        # since when an entry has been missing from the store: see ``_reconcile``.
        self._known: dict[str, list[Entry]] = {}
        self._missing_since: dict[str, float] = {}
        self._store_down = False

    @property
    def store(self) -> PresenceStore:
        if self._store is None:
            self._store = make_store()
        return self._store

    def reset(self) -> None:
        """Forget the store (settings changed)."""
        self._store = None

    def _expiry(self) -> float:
        return time.time() + ds_settings.PRESENCE_TTL

    async def join(self, member: Present) -> list[Entry]:
        member.presence_entry.expires = self._expiry()
        member.presence_entry.share_strings()
        self._local.setdefault(member.presence_room, set()).add(member)
        metrics.presence_joined()
        await self.store.put(member.presence_room, [member.presence_entry])
        self._ensure_task()
        return await self.changed(member.presence_room)

    async def leave(self, member: Present) -> None:
        members = self._local.get(member.presence_room)
        if members is not None:
            if member in members:
                metrics.presence_left()
            members.discard(member)
            if not members:
                del self._local[member.presence_room]
        await self.store.remove(member.presence_room, member.presence_entry.conn)
        await self.changed(member.presence_room)

    async def typing(self, member: Present, active: bool, private: bool = False) -> None:
        entry = member.presence_entry
        until = time.time() + ds_settings.TYPING_TIMEOUT if active else 0.0
        if not active and entry.typing_until == 0.0:
            return  # nothing to stop
        entry.typing_until, entry.private = until, private and active
        entry.expires = self._expiry()
        await self.store.put(member.presence_room, [entry])
        await self.changed(member.presence_room)

    async def changed(self, presence_room: str) -> list[Entry]:
        """Push the session's current presence to every process's connections; return it.

        A push reaches every connection of the session, so one per change would cost the
        square of the connections when many join at once. Changes are coalesced: the
        first schedules one push ``PRESENCE_COALESCE_MS`` later, which reads the store
        then and so carries every change made meanwhile (0: push at once).
        """
        entries = (await self.store.read([presence_room]))[presence_room]
        self.known(presence_room, entries)
        delay = ds_settings.PRESENCE_COALESCE_MS / 1000
        if delay > 0:
            self._pushes.schedule(presence_room, delay, self._push)
        else:
            await self._send_push(presence_room, entries)
        return entries

    async def _push(self, presence_room: str) -> None:
        entries = (await self.store.read([presence_room]))[presence_room]
        await self._send_push(presence_room, entries)

    async def _send_push(self, presence_room: str, entries: list[Entry]) -> None:
        layer = get_channel_layer()
        if layer is not None:
            # One JSON string rather than a list of dicts: every receiving connection
            # keeps its last message alive until the next one, and most are idle.
            message = {"type": PRESENCE_MESSAGE_TYPE, "entries": dump_entries(entries)}
            try:
                await layer.group_send(session_group(presence_room), message)
            except Exception:
                logger.exception("presence push failed; the next sweep corrects it")

    def _ensure_task(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = background_task(self._run())

    async def sweep_once(self) -> None:
        """Refresh this process's entries when due, then show everyone what expired."""
        sessions = list(self._local)
        if not sessions:
            return
        await self._drop_dead(sessions)
        sessions = list(self._local)
        for gone in self._known.keys() - self._local.keys():
            del self._known[gone]
        now = time.time()
        # After an outage the store may have lost everything (a Redis restart keeps
        # nothing): put this process's entries back at once, not a heartbeat later.
        if self._store_down or now - self._last_heartbeat >= ds_settings.PRESENCE_HEARTBEAT:
            await self._heartbeat(sessions)
        try:
            states = await self.store.read(sessions)
        except Exception as error:
            states = self._blind(sessions, error)
        else:
            if self._store_down:
                logger.warning("presence store answers again")
                self._store_down = False
            states = await self._reconcile(states)
        now = time.time()
        shown = 0
        for session, entries in states.items():
            frames = Frames(entries, now)
            for member in list(self._local.get(session, ())):
                try:
                    await member.presence_changed(frames)
                except Exception as error:  # one connection must not stop the sweep
                    logger.warning("presence update of a connection failed: %r", error)
                shown += 1
                if shown % SWEEP_SLICE == 0:
                    await asyncio.sleep(0)  # let deliveries through during a long sweep

    def known(self, presence_room: str, entries: list[Entry]) -> None:
        """Remember the store's entries of a local session (see ``_reconcile``)."""
        if presence_room in self._local:
            self._known[presence_room] = entries

    def pushed(self, presence_room: str, entries: list[Entry]) -> None:
        """A push (from :func:`load_entries`) says who is still here: forget the known
        entries it no longer lists - they left, and must not be kept as missing."""
        known = self._known.get(presence_room)
        if known is None or not all(e.conn for e in entries):
            return  # nothing known, or a push without tags
        tags = {e.conn for e in entries}
        self._known[presence_room] = [e for e in known if conn_tag(e.conn) in tags]

    async def _heartbeat(self, sessions: list[str]) -> None:
        self._last_heartbeat = time.time()
        expires = self._expiry()
        beats: dict[str, list[Entry]] = {}
        for session in sessions:
            members = list(self._local.get(session, ()))
            for member in members:
                member.presence_entry.expires = expires
            beats[session] = [m.presence_entry for m in members]
        try:
            await self.store.put_many(beats)
        except Exception as error:
            self._note_down(error)

    def _note_down(self, error: Exception) -> None:
        if not self._store_down:  # one line per outage, not one per sweep
            logger.warning("presence store unreachable (%r); showing what is known", error)
        self._store_down = True

    def _blind(self, sessions: list[str], error: Exception) -> dict[str, list[Entry]]:
        """What to show while the store cannot be read: the last known entries, still
        present (nobody can tell who left), with typing ended when it times out - a
        typing indicator must not outlive ``TYPING_TIMEOUT`` because the store is down."""
        self._note_down(error)
        later = time.time() + ds_settings.PRESENCE_SWEEP * 2
        states = {}
        for session in sessions:
            known = self._known.get(session)
            if known is None:
                local = self._local.get(session, ())
                known = [m.presence_entry for m in local]
            states[session] = [replace(e, expires=max(e.expires, later)) for e in known]
        return states

    async def _reconcile(self, states: dict[str, list[Entry]]) -> dict[str, list[Entry]]:
        """Repair what the store lost, so that nobody shows offline while present.

        This process's own entries missing from the store are put back at once. Another
        process's entry that vanished without having left (a leave is pushed, and the
        push updates ``_known``) is kept for two sweeps and at least ``MISSING_GRACE``
        seconds: its owner puts it back at its next sweep, which a busy process or a
        Redis connection that must be made again can delay; an entry really gone without
        a push disappears after that.
        """
        now = time.time()
        lost: dict[str, list[Entry]] = {}
        shown: dict[str, list[Entry]] = {}
        missing_now: dict[str, float] = {}
        for session, entries in states.items():
            present = {e.conn for e in entries}
            mine = [m.presence_entry for m in self._local.get(session, ())]
            own_lost = [e for e in mine if e.conn not in present]
            if own_lost:
                lost[session] = own_lost
            kept = []
            own = {e.conn for e in mine}
            for entry in self._known.get(session, ()):
                if entry.conn in present or entry.conn in own or entry.expires <= now:
                    continue
                since = self._missing_since.get(entry.conn, now)
                if now - since < max(ds_settings.PRESENCE_SWEEP * 2, MISSING_GRACE):
                    missing_now[entry.conn] = since
                    kept.append(entry)
            shown[session] = self._known[session] = [*entries, *own_lost, *kept]
        self._missing_since = missing_now
        if lost:
            try:
                await self.store.put_many(lost)
            except Exception as error:
                self._note_down(error)
        return shown

    async def _drop_dead(self, sessions: list[str]) -> None:
        """Forget members whose connection is gone without leaving: never renew a ghost."""
        for session in sessions:
            for member in list(self._local.get(session, ())):
                if _alive(member):
                    continue
                logger.warning("presence entry of a closed connection dropped")
                try:
                    await self.leave(member)
                except Exception as error:  # the entry then expires: nobody renews it
                    logger.warning("could not remove a presence entry: %r", error)

    async def _run(self) -> None:
        while self._local:
            await asyncio.sleep(ds_settings.PRESENCE_SWEEP)
            try:
                await self.sweep_once()
            except Exception:
                logger.exception("presence sweep failed")


def _alive(member: Present) -> bool:
    check = getattr(member, "presence_alive", None)
    return True if check is None else bool(check())


keeper = PresenceKeeper()
# The store depends on the presence keys and, with "auto", on the channel layer's hosts.
ds_settings.on_reload(keeper.reset, also=("CHANNEL_LAYERS",))
