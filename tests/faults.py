"""A TCP proxy that makes a real service fail the way a restart does, for one test only.

Restarting the machine's PostgreSQL or Redis would break every other test running on
them; the servers under test reach the service through this proxy instead, and
:meth:`FaultProxy.outage` drops every connection and refuses new ones for a while, as a
restart does from the client's side (``terminating connection``, then ``connection
refused``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from tests.live import free_port


class FaultProxy:
    """Forwards 127.0.0.1:<port> to ``target``; can cut and refuse connections."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._refuse_until = 0.0
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(5)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def outage(self, seconds: float) -> None:
        """Drop every open connection now and refuse new ones for ``seconds``."""

        async def cut() -> None:
            self._refuse_until = time.monotonic() + seconds
            for writer in list(self._writers):
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(cut(), self._loop).result(5)

    def restore(self) -> None:
        """End an outage now: new connections reach the target again (a test that waited
        for the outage to be noticed need not wait out its full length)."""

        async def end() -> None:
            self._refuse_until = 0.0

        asyncio.run_coroutine_threadsafe(end(), self._loop).result(5)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._refuse_until:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, upstream_writer))
        try:
            await asyncio.gather(
                self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
            )
        finally:
            for w in (writer, upstream_writer):
                self._writers.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
