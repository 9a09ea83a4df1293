"""Readiness checks: can this process reach what it needs to serve?

Three checks, run at once and each bounded by ``HEALTH_CHECK_TIMEOUT``: the database
answers a query; a message sent on the channel layer comes back; and, where presence
and the limits live in Redis, that Redis answers. The readiness endpoint, the workers'
health port and ``manage.py ds_doctor`` use them. A failure's reason goes to the log,
not to whoever asked (it may name hosts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from channels.layers import get_channel_layer
from django.db import connection

from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.presence import state_redis_url

logger = logging.getLogger(__name__)

HEALTH_MESSAGE_TYPE = "ds.health"


@dataclass
class Check:
    """The outcome of one check."""

    name: str
    ok: bool
    seconds: float
    error: str = ""  # for the log and the doctor, never for an HTTP client


def ping_database() -> None:
    """One query on this thread's connection (a broken one is replaced first)."""
    connection.close_if_unusable_or_obsolete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _ping_and_release() -> None:
    try:
        ping_database()
    finally:
        connection.close()  # a probe every few seconds needs no connection of its own


# The ping runs on a thread of its own, not on the process's database thread: while the
# database is away a connection attempt can hang for many seconds (a pool waits for a
# connection), and it must hold up neither the requests nor the probe's own answer.
_PING_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ds-health-db")
_ping: asyncio.Future[None] | None = None


async def database() -> None:
    global _ping
    loop = asyncio.get_running_loop()
    # One ping at a time: probes that come while one hangs wait for that one.
    if _ping is None or _ping.done() or _ping.get_loop() is not loop:
        _ping = loop.run_in_executor(_PING_THREAD, _ping_and_release)
    await asyncio.shield(_ping)


async def channel_layer_round_trip() -> None:
    """Send a message to a new channel of this process and receive it back."""
    layer = get_channel_layer()
    if layer is None:
        return
    channel = await layer.new_channel("ds-health.")
    nonce = secrets.token_hex(8)
    try:
        await layer.send(channel, {"type": HEALTH_MESSAGE_TYPE, "nonce": nonce})
        while True:
            message = await layer.receive(channel)
            if message.get("nonce") == nonce:
                return
    finally:
        await _forget_channel(layer, channel)


async def _forget_channel(layer: Any, channel: str) -> None:
    """Let the layer drop the channel: a receive that is cancelled unsubscribes it
    (channels-redis' pub/sub layer) or deletes its queue (in memory); a probe every few
    seconds must not leave a subscription each."""
    waiting = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await waiting


async def presence_redis() -> None:
    """PING the Redis of presence and the limits, when they live in Redis."""
    url = state_redis_url()
    if not url:
        return
    import redis.asyncio as aioredis

    timeout = ds_settings.HEALTH_CHECK_TIMEOUT
    client = aioredis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        await client.ping()
    finally:
        await client.aclose()


CHECKS: dict[str, Callable[[], Awaitable[None]]] = {
    "database": database,
    "channel_layer": channel_layer_round_trip,
    "presence": presence_redis,
}


async def _run(name: str, check: Callable[[], Awaitable[None]]) -> Check:
    start = time.monotonic()
    try:
        await asyncio.wait_for(check(), ds_settings.HEALTH_CHECK_TIMEOUT)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        if isinstance(exc, TimeoutError):
            error = f"no answer within {ds_settings.HEALTH_CHECK_TIMEOUT:g} s"
        return Check(name, False, time.monotonic() - start, error)
    return Check(name, True, time.monotonic() - start)


# Checks failing at the last call: a probe every few seconds logs an outage once.
_failing: set[str] = set()


async def readiness() -> list[Check]:
    """Every check, run concurrently; a failure is logged when it starts and ends."""
    results = list(await asyncio.gather(*(_run(n, c) for n, c in CHECKS.items())))
    for result in results:
        if not result.ok and result.name not in _failing:
            _failing.add(result.name)
            logger.warning("readiness: %s failed (%s)", result.name, result.error)
        elif result.ok and result.name in _failing:
            _failing.discard(result.name)
            logger.warning("readiness: %s available again", result.name)
    return results
