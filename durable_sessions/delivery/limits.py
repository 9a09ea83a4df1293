"""Limits per visitor, user and IP address, shared by every transport and process.

The frame bucket of a websocket (``RATE_LIMIT_FRAMES``) bounds one socket; these bound a
person, whatever number of sockets, long polls and HTTP requests they use:

- **Concurrent slots** (:meth:`Limiter.aacquire`, :meth:`Limiter.arelease`): websocket
  connections per visitor, per visitor in one session and per IP address; long polls
  waiting per visitor. A slot is a member with an expiry that its process renews every
  ``PRESENCE_HEARTBEAT``, so the slots of a process that died (``kill -9``) free
  themselves after ``PRESENCE_TTL``, as presence entries do.
- **Rates** (:meth:`Limiter.hit`, :meth:`Limiter.check` and their async twins): messages
  per minute, websocket and HTTP sharing one budget, and sessions created per hour, per
  visitor and per IP address. Each is a bucket of ``limit`` refilled evenly over its
  period (GCRA): a burst of ``limit``, then one every ``period / limit`` seconds. A refused
  attempt uses nothing, and all of a kind's buckets are checked and taken atomically.

The "visitor" is the logged-in user, or else the anonymous visitor id of the browser
session. Operators (``adapter.is_operator``) are exempt: the host trusts them, and a
console keeps many sockets open. Addresses that are not globally routable (loopback,
private networks) are not limited per IP: such an address is a proxy's or an internal
network's, shared by everyone behind it; an IPv6 address counts as its /64 network, which
one machine usually has whole. A limit set to 0 is off.

The counts live in Redis when presence does (``PRESENCE_REDIS_URL``, or the channel
layer's Redis), so they hold across processes; in process memory otherwise. When Redis
does not answer, limits are not enforced (one log line per outage): they must not take
the site down with them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, TypeVar

from asgiref.sync import sync_to_async

from durable_sessions.adapter import get_adapter, visitor_id
from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.presence import state_redis_url
from durable_sessions.errors import RateLimited
from durable_sessions.tasks import background_task

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The websocket close code of a connection refused by a limit (after an ``error`` frame
# ``rate_limited`` carrying ``retry_after``).
CLOSE_CODE = 4429
# A slot frees when another connection or long poll ends, which nobody can predict.
SLOT_RETRY_AFTER = 5.0

VISITOR, SESSION, IP = "v", "s", "ip"  # what a limit counts by


@dataclass(frozen=True, slots=True)
class Rule:
    """One limit: the setting holding its number, what it counts by, its period (rates)."""

    setting: str
    by: str
    period: float = 0.0

    @property
    def limit(self) -> int:
        return int(getattr(ds_settings, self.setting))


RATES: dict[str, tuple[Rule, ...]] = {
    "message": (
        Rule("LIMIT_MESSAGES_PER_MINUTE", VISITOR, 60.0),
        Rule("LIMIT_MESSAGES_PER_MINUTE_PER_IP", IP, 60.0),
    ),
    "session": (
        Rule("LIMIT_SESSIONS_PER_HOUR", VISITOR, 3600.0),
        Rule("LIMIT_SESSIONS_PER_HOUR_PER_IP", IP, 3600.0),
    ),
}
SLOTS: dict[str, tuple[Rule, ...]] = {
    "connection": (
        Rule("LIMIT_CONNECTIONS_PER_VISITOR", VISITOR),
        Rule("LIMIT_CONNECTIONS_PER_SESSION", SESSION),
        Rule("LIMIT_CONNECTIONS_PER_IP", IP),
    ),
    "long_poll": (Rule("LIMIT_LONG_POLLS_PER_VISITOR", VISITOR),),
}
REFUSALS = {
    "message": "too many messages",
    "session": "too many new sessions",
    "connection": "too many open connections",
    "long_poll": "too many long polls waiting at once",
}


# --- who is counted -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Who:
    """What a request or connection counts against."""

    identity: str | None  # "u<user pk>" or "v<visitor id>"; None: only the address counts
    ip: str | None  # see ip_key; None: no limit per IP applies
    exempt: bool = False  # an operator


def ip_key(address: str | None) -> str | None:
    """The address a limit per IP counts by, or None when none applies (not global)."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_global:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def identify(user: Any, visitor: str | None, address: str | None, *, exempt: bool) -> Who:
    """Who a caller is for the limits: the user when logged in, else the visitor."""
    if user is not None and user.is_authenticated:
        identity: str | None = f"u{user.pk}"
    else:
        identity = f"v{visitor}" if visitor else None
    # Interned: the connections of one user or visitor (tabs, devices) share one copy.
    ip = ip_key(address)
    return Who(sys.intern(identity) if identity else None, sys.intern(ip) if ip else None, exempt)


def scope_who(scope: dict[str, Any], *, exempt: bool) -> Who:
    """Who a websocket connection is. Call it after the access check, which has loaded
    the scope's Django session (reading it here then needs no database)."""
    user = scope.get("user")
    logged_in = user is not None and user.is_authenticated
    visitor = None if logged_in else visitor_id(scope.get("session"))
    client = scope.get("client")
    return identify(user, visitor, client[0] if client else None, exempt=exempt)


def request_who(request: Any) -> Who:
    """Who an HTTP request (Django's or DRF's) is; sync: it may read the database."""
    user = getattr(request, "user", None)
    logged_in = user is not None and user.is_authenticated
    visitor = None if logged_in else visitor_id(getattr(request, "session", None))
    return identify(
        user,
        visitor,
        request.META.get("REMOTE_ADDR"),
        exempt=logged_in and get_adapter().is_operator(user),
    )


def _subject(rule: Rule, who: Who, within: str) -> str | None:
    """The value ``rule`` counts ``who`` by, or None when the rule does not apply."""
    if rule.by == IP:
        return who.ip
    if who.identity is None:
        return None
    return f"{who.identity}:{within}" if rule.by == SESSION else who.identity


# --- stores ---------------------------------------------------------------------------------

Bucket = tuple[str, int, float]  # key, limit, period
Counter = tuple[str, int]  # key, limit


class Store(Protocol):
    def hit(self, buckets: list[Bucket], now: float) -> float | None: ...
    async def ahit(self, buckets: list[Bucket], now: float) -> float | None: ...
    async def acquire(self, counters: list[Counter], member: str, now: float) -> bool: ...
    async def renew(self, held: list[tuple[list[str], str]], now: float) -> None: ...
    async def release(self, keys: list[str], member: str) -> None: ...


def _slot_ttl() -> float:
    return ds_settings.PRESENCE_TTL


class MemoryStore:
    """Counts of one process; thread-safe (HTTP views run in threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tats: dict[str, float] = {}  # bucket key -> theoretical arrival time
        self._slots: dict[str, dict[str, float]] = {}  # key -> member -> expiry

    def hit(self, buckets: list[Bucket], now: float) -> float | None:
        with self._lock:
            if len(self._tats) > 10_000:  # forget full buckets: memory stays bounded
                self._tats = {k: t for k, t in self._tats.items() if t > now}
            wait, tats = 0.0, []
            for key, limit, period in buckets:
                tat = max(self._tats.get(key, now), now) + period / limit
                wait = max(wait, tat - period - now)
                tats.append(tat)
            if wait > 0:
                return wait
            for (key, _, _), tat in zip(buckets, tats, strict=True):
                self._tats[key] = tat
            return None

    async def ahit(self, buckets: list[Bucket], now: float) -> float | None:
        return self.hit(buckets, now)

    async def acquire(self, counters: list[Counter], member: str, now: float) -> bool:
        with self._lock:
            for key, limit in counters:
                members = self._slots.setdefault(key, {})
                for gone in [m for m, expiry in members.items() if expiry <= now]:
                    del members[gone]
                if member not in members and len(members) >= limit:
                    return False
            for key, _ in counters:
                self._slots[key][member] = now + _slot_ttl()
            return True

    async def renew(self, held: list[tuple[list[str], str]], now: float) -> None:
        with self._lock:
            for keys, member in held:
                for key in keys:
                    members = self._slots.get(key)
                    if members is not None and member in members:
                        members[member] = now + _slot_ttl()

    async def release(self, keys: list[str], member: str) -> None:
        with self._lock:
            for key in keys:
                members = self._slots.get(key)
                if members is not None:
                    members.pop(member, None)
                    if not members:
                        del self._slots[key]


# KEYS: buckets; ARGV: now, then each bucket's period and limit. Returns the seconds to
# wait (as a string: Redis would truncate a Lua number), or nil after taking from each.
HIT_LUA = """
local now = tonumber(ARGV[1])
local wait = 0
local tats = {}
for i = 1, #KEYS do
  local period = tonumber(ARGV[i * 2])
  local limit = tonumber(ARGV[i * 2 + 1])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  tats[i] = tat + period / limit
  local early = tats[i] - period - now
  if early > wait then wait = early end
end
if wait > 0 then return tostring(wait) end
for i = 1, #KEYS do
  local ms = math.ceil((tats[i] - now) * 1000) + 1000
  redis.call('SET', KEYS[i], tostring(tats[i]), 'PX', ms)
end
return false
"""

# KEYS: sorted sets of members by expiry; ARGV: now, expiry, member, ttl (whole seconds),
# then each set's limit. Returns 1 after adding the member to every set, 0 if one is full.
ACQUIRE_LUA = """
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[1])
  if not redis.call('ZSCORE', KEYS[i], ARGV[3])
      and redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[4 + i]) then
    return 0
  end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[3])
  redis.call('EXPIRE', KEYS[i], ARGV[4])
end
return 1
"""


# What a store that does not answer raises. redis-py comes with the "redis" extra; without
# it the counts live in memory and only OSError can occur.
try:
    from redis.exceptions import RedisError

    STORE_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)
except ImportError:
    STORE_ERRORS = (OSError,)


class RedisStore:
    """Counts shared by every process using one Redis."""

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        # Short timeouts: a limit check sits in front of every handshake and post.
        self._sync = redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(
                url, max_connections=50, timeout=5, socket_timeout=2, socket_connect_timeout=2
            )
        )
        self._sync_hit = self._sync.register_script(HIT_LUA)
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[str, Any] = {}

    def _redis(self) -> Any:
        import redis.asyncio as aioredis

        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url, max_connections=50, timeout=5, socket_timeout=2, socket_connect_timeout=2
            )
            self._client = aioredis.Redis(connection_pool=pool)
            self._loop = loop
            self._scripts = {
                "hit": self._client.register_script(HIT_LUA),
                "acquire": self._client.register_script(ACQUIRE_LUA),
            }
        return self._client

    @staticmethod
    def _hit_args(buckets: list[Bucket], now: float) -> tuple[list[str], list[float]]:
        args: list[float] = [now]
        for _, limit, period in buckets:
            args += [period, limit]
        return [key for key, _, _ in buckets], args

    def hit(self, buckets: list[Bucket], now: float) -> float | None:
        keys, args = self._hit_args(buckets, now)
        wait = self._sync_hit(keys=keys, args=args)
        return None if wait is None else float(wait)

    async def ahit(self, buckets: list[Bucket], now: float) -> float | None:
        self._redis()
        keys, args = self._hit_args(buckets, now)
        wait = await self._scripts["hit"](keys=keys, args=args)
        return None if wait is None else float(wait)

    async def acquire(self, counters: list[Counter], member: str, now: float) -> bool:
        self._redis()
        ttl = _slot_ttl()
        args: list[Any] = [now, now + ttl, member, int(ttl) + 1]
        args += [limit for _, limit in counters]
        keys = [key for key, _ in counters]
        return bool(await self._scripts["acquire"](keys=keys, args=args))

    async def renew(self, held: list[tuple[list[str], str]], now: float) -> None:
        ttl = _slot_ttl()
        async with self._redis().pipeline(transaction=False) as pipe:
            for keys, member in held:
                for key in keys:
                    pipe.zadd(key, {member: now + ttl}, xx=True)  # never revive a released one
                    pipe.expire(key, int(ttl) + 1)
            await pipe.execute()

    async def release(self, keys: list[str], member: str) -> None:
        async with self._redis().pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrem(key, member)
            await pipe.execute()


def make_store() -> Store:
    """Redis where presence is kept in Redis, else memory."""
    url = state_redis_url()
    return RedisStore(url) if url else MemoryStore()


# --- the limiter ----------------------------------------------------------------------------


@dataclass(eq=False, slots=True, weakref_slot=True)
class Slot:
    """A connection's or long poll's place in its limits, held until released."""

    who: Who
    keys: list[str] | tuple[()] = ()  # none held (exempt, or no limit applies)
    member: str = ""


class Limiter:
    """The limits of one process, over a store (shared through Redis, or its own)."""

    def __init__(self, store: Store | None = None, clock: Callable[[], float] = time.time):
        self._given = store
        self._store = store
        self.clock = clock
        self._held: weakref.WeakSet[Slot] = weakref.WeakSet()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = make_store()
        return self._store

    def reset(self) -> None:
        """Forget the store (settings changed): memory counts start over."""
        self._store = self._given

    @staticmethod
    def key(kind: str, rule: Rule, subject: str) -> str:
        return f"{ds_settings.GROUP_PREFIX}:limit:{kind}:{rule.by}:{subject}"

    # Redis down: allow, and say so once per outage rather than once per request.
    def _failed(self, error: Exception) -> None:
        if not self._failing:
            self._failing = True
            logger.warning("limits not enforced: their store does not answer (%s)", error)

    def _answered(self) -> None:
        if self._failing:
            self._failing = False
            logger.warning("limits enforced again: their store answers")

    def _guarded(self, call: Callable[[], T], fallback: T) -> T:
        try:
            result = call()
        except STORE_ERRORS as error:
            self._failed(error)
            return fallback
        self._answered()
        return result

    async def _aguarded(self, call: Callable[[], Awaitable[T]], fallback: T) -> T:
        try:
            result = await call()
        except STORE_ERRORS as error:
            self._failed(error)
            return fallback
        self._answered()
        return result

    def _buckets(self, kind: str, who: Who) -> list[Bucket]:
        if who.exempt:
            return []
        buckets = []
        for rule in RATES[kind]:
            subject = _subject(rule, who, "")
            if rule.limit and subject is not None:
                buckets.append((self.key(kind, rule, subject), rule.limit, rule.period))
        return buckets

    # --- rates ---

    def hit(self, kind: str, who: Who) -> float | None:
        """Count one ``kind`` ("message", "session") for ``who``: None when allowed, else
        the seconds to wait (and nothing was counted)."""
        buckets = self._buckets(kind, who)
        if not buckets:
            return None
        return self._guarded(lambda: self.store.hit(buckets, self.clock()), None)

    async def ahit(self, kind: str, who: Who) -> float | None:
        """:meth:`hit` from the event loop."""
        buckets = self._buckets(kind, who)
        if not buckets:
            return None
        return await self._aguarded(lambda: self.store.ahit(buckets, self.clock()), None)

    def check(self, kind: str, who: Who) -> None:
        """:meth:`hit`, raising :class:`RateLimited` when refused."""
        wait = self.hit(kind, who)
        if wait is not None:
            raise self.refusal(kind, wait)

    async def acheck(self, kind: str, who: Who) -> None:
        """:meth:`check` from the event loop."""
        wait = await self.ahit(kind, who)
        if wait is not None:
            raise self.refusal(kind, wait)

    @staticmethod
    def refusal(kind: str, wait: float) -> RateLimited:
        seconds = max(1, math.ceil(wait))
        return RateLimited(f"{REFUSALS[kind]}; try again in {seconds} s", seconds)

    # --- slots ---

    async def aacquire(self, kind: str, who: Who, within: str = "") -> Slot:
        """Take a ``kind`` slot ("connection", "long_poll") for ``who`` (``within``: the
        session, for the limit per session). Raises :class:`RateLimited` when one of its
        limits is full; hold the slot until :meth:`arelease`."""
        slot = Slot(who)
        if who.exempt:
            return slot
        counters = []
        for rule in SLOTS[kind]:
            subject = _subject(rule, who, within)
            if rule.limit and subject is not None:
                counters.append((self.key(kind, rule, subject), rule.limit))
        if not counters:
            return slot
        member = uuid.uuid4().hex
        store = self.store
        if not await self._aguarded(lambda: store.acquire(counters, member, self.clock()), True):
            raise self.refusal(kind, SLOT_RETRY_AFTER)
        slot.keys, slot.member = [key for key, _ in counters], member
        self._held.add(slot)
        self._ensure_renewal()
        return slot

    async def arelease(self, slot: Slot | None) -> None:
        """Give a slot back (idempotent; None and an exempt slot are fine)."""
        if slot is None or not slot.keys:
            return
        keys, slot.keys = slot.keys, ()
        self._held.discard(slot)
        store = self.store
        await self._aguarded(lambda: store.release(keys, slot.member), None)

    def _ensure_renewal(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = background_task(self._renew_forever())

    async def renew_once(self) -> None:
        """Push back the expiry of every slot this process holds."""
        held = [(list(slot.keys), slot.member) for slot in list(self._held) if slot.keys]
        if held:
            store = self.store
            await self._aguarded(lambda: store.renew(held, self.clock()), None)

    async def _renew_forever(self) -> None:
        while self._held:
            await asyncio.sleep(ds_settings.PRESENCE_HEARTBEAT)
            try:
                await self.renew_once()
            except Exception:
                logger.exception("renewing limit slots failed")


class Held:
    """At most one slot, taken inside an ``async with`` and released on leaving it: for
    code that only learns who is calling part way through (the long poll)."""

    def __init__(self, kind: str, limits: Limiter | None = None) -> None:
        self.kind = kind
        self.limits = limits or limiter
        self.slot: Slot | None = None

    async def __aenter__(self) -> Held:
        return self

    async def take(self, request: Any) -> RateLimited | None:
        """Take the slot for an HTTP request; the refusal, if refused."""
        who = await sync_to_async(request_who, thread_sensitive=True)(request)
        try:
            self.slot = await self.limits.aacquire(self.kind, who)
        except RateLimited as refused:
            return refused
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.limits.arelease(self.slot)


limiter = Limiter()
# The store follows the presence keys and, with "auto", the channel layer's hosts; a
# reload also starts memory counts over (each test starts from none).
ds_settings.on_reload(limiter.reset, also=("CHANNEL_LAYERS",))

hit, ahit, check, acheck = limiter.hit, limiter.ahit, limiter.check, limiter.acheck
aacquire, arelease = limiter.aacquire, limiter.arelease
