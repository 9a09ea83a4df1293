"""Process-wide background tasks."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def background_task(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Start ``coro`` in the running loop with an empty context.

    A task inherits the context it was created in. One created while a sync view waits
    in ``async_to_sync`` would route its ``database_sync_to_async`` calls to that
    request's thread, which is gone once the request ends.
    """
    return asyncio.get_running_loop().create_task(coro, context=contextvars.Context())
