"""Websocket (or AI SDK answer stream) clients in a process of their own:
``python -m bench.loadgen``.

Commands arrive on stdin, one JSON object a line; each gets one reply line on stdout,
prefixed with ``BENCH``. The clients never share a process with a server.

- ``connect``: open ``targets`` (``[url, key]`` pairs; the key names the stream the
  connection follows) and, for the durable protocol, read up to the ``live`` frame;
  with ``sse``, the urls are AI SDK answer streams (``GET ai/chat/<id>/stream``), open
  once their first chunk came (:mod:`bench.sse_client`).
- ``reset``: forget the deliveries recorded so far.
- ``report``: latencies of the deliveries stamped within ``[since, until)``, gaps and
  duplicates seen, and per key the lowest last ``seq`` over its connections (with
  ``per_key``, also the deliveries of each key within the window).
- ``resume``: connect to one url ``repeat`` times, timing the first event and ``live``.
- ``close``: close every connection and exit.

A delivery's latency is its receipt time minus the wall-clock stamp the writer put at
the start of the delta text when it flushed it (writer and clients share the clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from array import array
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect

from bench.procs import raise_open_files
from bench.protocol import reply, serve
from bench.sse_client import AnswerStream, open_answer_stream


def _own_origin(url: str) -> str:
    """The origin of the page a browser would connect from: the server's own (scheme,
    host and port), which is all the servers accept besides CSRF_TRUSTED_ORIGINS."""
    parts = urlsplit(url)
    return f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"


CONNECT_TIMEOUT = 60.0


@dataclass(eq=False)
class Conn:
    """One client connection and what it has seen."""

    key: str
    ws: ClientConnection | None
    key_id: int = 0
    last: int = 0
    # An answer stream has no seq: its stamps must only grow (the writer's clock).
    sse: AnswerStream | None = field(default=None, repr=False)
    last_stamp: float = 0.0
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    close_code: int | None = None


def log_events(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """The log events a frame carries: itself, the events of an ``events`` frame (a
    replay page, asked for with ``batch=1`` as client.js does), or none."""
    if frame.get("type") == "events":
        return frame["events"]
    return [frame] if "seq" in frame and "at" in frame else []


def stamp_of(frame: dict[str, Any]) -> float | None:
    """The writer's wall-clock stamp at the start of a delta's text, if any."""
    if frame.get("type") != "message.delta":
        return None
    text = frame["data"]["text"]
    head, _, _ = text.partition(" ")
    try:
        return float(head)
    except ValueError:
        return None


class Clients:
    """The connections of this process and the deliveries they recorded."""

    def __init__(self) -> None:
        self.conns: list[Conn] = []
        self.sent = array("d")
        self.received = array("d")
        self.owners = array("I")  # key id of each delivery
        self.key_ids: dict[str, int] = {}
        self.gaps = 0
        self.duplicates = 0
        self.ended = 0

    async def _open(self, url: str, headers: dict[str, str], origin: str | None) -> Any:
        return await connect(
            url,
            origin=origin or _own_origin(url),  # type: ignore[arg-type]
            additional_headers=headers,
            compression=None,
            ping_interval=None,
            open_timeout=CONNECT_TIMEOUT,
            close_timeout=2,
            max_size=2**24,
        )

    def _key_id(self, key: str) -> int:
        return self.key_ids.setdefault(key, len(self.key_ids))

    def _record(self, conn: Conn, stamp: float, now: float) -> None:
        self.sent.append(stamp)
        self.received.append(now)
        self.owners.append(conn.key_id)

    async def _open_sse(self, url: str, key: str, headers: dict[str, str]) -> Conn:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            stream, first = await open_answer_stream(url, headers)
        conn = Conn(key, None, self._key_id(key), sse=stream)
        conn.task = asyncio.get_running_loop().create_task(self._read_sse(conn, first))
        return conn

    async def _read_sse(self, conn: Conn, data: bytes) -> None:
        assert conn.sse is not None
        try:
            while data:
                now = time.time()
                for stamp in conn.sse.stamps(data):
                    if stamp <= conn.last_stamp:
                        self.duplicates += 1  # sent twice, or out of order
                        continue
                    conn.last_stamp = stamp
                    self._record(conn, stamp, now)
                data = await conn.sse.piece()
        except Exception:
            pass
        finally:
            self.ended += 1

    async def _open_one(
        self, url: str, key: str, headers: dict[str, str], origin: str | None, durable: bool
    ) -> Conn:
        ws = await self._open(url, headers, origin)
        conn = Conn(key, ws, self._key_id(key))
        if durable:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                while True:
                    frame = json.loads(await ws.recv())
                    if events := log_events(frame):
                        conn.last = events[-1]["seq"]
                    elif frame.get("type") == "live":
                        conn.last = frame["last_seq"]
                        break
                    elif frame.get("type") in ("reset", "error"):
                        raise RuntimeError(f"unexpected frame {frame}")
        conn.task = asyncio.get_running_loop().create_task(self._read(conn))
        return conn

    async def connect(self, command: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        limit = asyncio.Semaphore(int(command.get("concurrency", 50)))
        headers = command.get("headers") or {}
        origin = command.get("origin")
        durable = bool(command.get("durable", True))
        sse = bool(command.get("sse", False))
        errors: list[str] = []

        async def one(url: str, key: str) -> None:
            async with limit:
                try:
                    if sse:
                        self.conns.append(await self._open_sse(url, key, headers))
                        return
                    self.conns.append(await self._open_one(url, key, headers, origin, durable))
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])

        before = len(self.conns)
        await asyncio.gather(*(one(url, key) for url, key in command["targets"]))
        return {
            "connected": len(self.conns) - before,
            "total": len(self.conns),
            "failed": len(errors),
            "errors": errors[:5],
            "seconds": time.monotonic() - started,
        }

    async def _read(self, conn: Conn) -> None:
        assert conn.ws is not None
        try:
            async for raw in conn.ws:
                now = time.time()
                # Presence and agent status carry no event: not part of the log.
                for frame in log_events(json.loads(raw)):
                    seq = frame["seq"]
                    if seq != conn.last + 1:
                        if seq <= conn.last:
                            self.duplicates += 1
                            continue
                        self.gaps += 1
                    conn.last = seq
                    stamp = stamp_of(frame)
                    if stamp is not None:
                        self._record(conn, stamp, now)
        except Exception:
            pass
        finally:
            self.ended += 1
            conn.close_code = conn.ws.close_code

    def reset(self) -> dict[str, Any]:
        self.sent = array("d")
        self.received = array("d")
        self.owners = array("I")
        self.gaps = self.duplicates = 0
        return {"ok": True}

    def report(self, command: dict[str, Any]) -> dict[str, Any]:
        since, until = float(command["since"]), float(command["until"])
        pairs = [
            (s, r) for s, r in zip(self.sent, self.received, strict=True) if since <= s < until
        ]
        latencies = [round((r - s) * 1000.0, 2) for s, r in pairs]
        lowest: dict[str, int] = {}
        for conn in self.conns:
            lowest[conn.key] = min(lowest.get(conn.key, conn.last), conn.last)
        codes = [c.close_code for c in self.conns if c.task is not None and c.task.done()]
        per_key: dict[str, int] = {}
        if command.get("per_key"):
            names = list(self.key_ids)
            counts = [0] * len(names)
            for stamp, owner in zip(self.sent, self.owners, strict=True):
                if since <= stamp < until:
                    counts[owner] += 1
            per_key = dict(zip(names, counts, strict=True))
        return {
            "latencies_ms": latencies,
            "per_key": per_key,
            "sent": [round(s, 4) for s, _ in pairs] if command.get("with_times") else [],
            "gaps": self.gaps,
            "duplicates": self.duplicates,
            "last": lowest,
            "connections": len(self.conns),
            "ended": self.ended,
            "close_codes": sorted({str(c) for c in codes})[:5],
        }

    async def resume(self, command: dict[str, Any]) -> dict[str, Any]:
        """Reconnect ``repeat`` times; time to the first event and to ``live``."""
        headers = command.get("headers") or {}
        first_ms: list[float] = []
        live_ms: list[float] = []
        events: list[int] = []
        for _ in range(int(command.get("repeat", 1))):
            started = time.perf_counter()
            first: float | None = None
            count = 0
            ws = await self._open(command["url"], headers, command.get("origin"))
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    while True:
                        frame = json.loads(await ws.recv())
                        if events := log_events(frame):
                            count += len(events)
                            if first is None:
                                first = time.perf_counter()
                        elif frame.get("type") == "live":
                            live = time.perf_counter()
                            break
            finally:
                await ws.close()
            first_ms.append(((first or live) - started) * 1000.0)
            live_ms.append((live - started) * 1000.0)
            events.append(count)
            await asyncio.sleep(0.2)
        return {"first_ms": first_ms, "live_ms": live_ms, "events": events}

    async def close(self) -> dict[str, Any]:
        for conn in self.conns:
            if conn.task is not None:
                conn.task.cancel()
            if conn.sse is not None:
                conn.sse.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(20):
                await asyncio.gather(
                    *(conn.ws.close() for conn in self.conns if conn.ws is not None),
                    return_exceptions=True,
                )
        closed = len(self.conns)
        self.conns = []
        return {"closed": closed}


async def handle(clients: Clients, command: dict[str, Any]) -> dict[str, Any] | None:
    """Run one command; ``close`` ends the process (after its reply)."""
    kind = command["cmd"]
    if kind == "connect":
        return await clients.connect(command)
    if kind == "reset":
        return clients.reset()
    if kind == "report":
        return clients.report(command)
    if kind == "resume":
        return await clients.resume(command)
    if kind == "close":
        reply(await clients.close())
        return None
    raise ValueError(f"unknown command {kind!r}")


async def run() -> None:
    clients = Clients()
    try:
        await serve(lambda command: handle(clients, command))
    finally:
        await clients.close()


def main() -> None:
    raise_open_files()
    asyncio.run(run())


if __name__ == "__main__":
    main()
