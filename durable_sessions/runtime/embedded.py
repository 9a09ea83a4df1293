"""The embedded runner: with ``RUNNER = "embedded"`` runs execute inside the server.

Wrap the ASGI application once (``project/asgi.py`` in the demo)::

    application = EmbeddedRunner(ProtocolTypeRouter({...}))

The process's :class:`~durable_sessions.runtime.worker.Worker` then starts with the
server: on the ASGI ``lifespan`` startup where the server sends one (Uvicorn,
Hypercorn), as soon as Daphne's reactor runs (Daphne sends no lifespan events), and in
any case with the first connection. Runs left pending by a restart are picked up by its
sweep at once, without waiting for a client. When the server stops (SIGTERM, the ASGI
lifespan shutdown), the worker drains: its runs get ``DRAIN_GRACE`` seconds to finish,
the rest is handed back to pending for another process to continue. With
``RUNNER = "worker"`` the wrapper does nothing: ``manage.py run_agents`` processes
execute the runs.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable
from typing import Any

from durable_sessions.app_settings import ds_settings
from durable_sessions.runtime.worker import Worker

logger = logging.getLogger(__name__)

_worker: Worker | None = None


def start_embedded_worker() -> Worker | None:
    """This process's worker, started in the running loop if it is not running there."""
    global _worker
    if ds_settings.RUNNER != "embedded":
        return None
    loop = asyncio.get_running_loop()
    if _worker is None or not _worker.running or _worker.loop is not loop:
        _worker = Worker()
        _worker.start()
        logger.info("embedded agent worker %s started", _worker.id)
    return _worker


def _start_with_server() -> None:
    """Start the worker once the server's event loop runs."""
    if ds_settings.RUNNER != "embedded":
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:  # imported by a server from inside its loop (Uvicorn)
        loop.call_soon(start_embedded_worker)
        return
    reactor_module = sys.modules.get("twisted.internet.reactor")
    if reactor_module is not None:  # Daphne installed Twisted's asyncio reactor
        from twisted.internet import asyncioreactor

        if isinstance(reactor_module, asyncioreactor.AsyncioSelectorReactor):
            # callLater runs in the asyncio loop once the reactor is running.
            reactor_module.callWhenRunning(reactor_module.callLater, 0, start_embedded_worker)
            # On SIGTERM the reactor waits for the drain before it stops.
            reactor_module.addSystemEventTrigger("before", "shutdown", _drain_deferred)


def _drain_deferred() -> Any:
    """A Deferred that fires once this process's worker has drained (Daphne's shutdown)."""
    if _worker is None or not _worker.running:
        return None
    from twisted.internet.defer import Deferred

    return Deferred.fromFuture(asyncio.ensure_future(_worker.drain()))


class EmbeddedRunner:
    """ASGI middleware that runs the embedded agent worker alongside ``app``."""

    # Whether this process built one (system check W008 looks).
    constructed = False

    def __init__(self, app: Any) -> None:
        self.app = app
        EmbeddedRunner.constructed = True
        _start_with_server()

    # A plain function that hands back the wrapped app's coroutine: no coroutine frame of
    # its own for each open connection (the attribute tells ASGI servers it is ASGI 3).
    _asgi_single_callable = True

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        if scope["type"] == "lifespan":
            return self._lifespan(receive, send)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # called outside the loop that will run it
            return self._call_in_loop(scope, receive, send)
        start_embedded_worker()
        return self.app(scope, receive, send)

    async def _call_in_loop(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        start_embedded_worker()
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                start_embedded_worker()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _worker is not None:
                    await _worker.drain()
                await send({"type": "lifespan.shutdown.complete"})
                return
