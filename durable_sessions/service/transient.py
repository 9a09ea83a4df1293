"""Transient database failures: what counts as one, and how the runtime retries.

A PostgreSQL restart or failover breaks the connections of every process for a second or
two. A writer that gives up at once fails replies that would have gone on, and a run whose
"failed" mark cannot be written either stays ``running`` until its lease expires and is
reaped as a crash. So the runtime retries its writes a few times over several seconds,
well within ``LEASE_TIMEOUT``. Django closes a connection that failed before the next call
on the database thread (``database_sync_to_async`` checks), so a retry gets a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError

from durable_sessions.observability import metrics

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds to wait before each retry: about 8 s in all.
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a lost or refused database connection (worth a retry)."""
    return isinstance(exc, OperationalError | InterfaceError)


async def retrying(call: Callable[[], Awaitable[T]], what: str) -> T:
    """``await call()``, retried while the database is unreachable; the last error is
    raised once the delays are spent. One log line per failure, no traceback."""
    for delay in (*RETRY_DELAYS, None):
        try:
            return await call()
        except Exception as exc:
            if delay is None or not is_transient(exc):
                raise
            metrics.storage_retry()
            logger.warning("%s: database unavailable (%s); retrying in %g s", what, exc, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
