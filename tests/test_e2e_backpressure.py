"""A real Daphne process: clients that never read cost bounded memory and resume exactly;
a storm of closing clients logs no traceback and leaves no presence behind."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from pathlib import Path

import pytest
import websockets
from channels.db import database_sync_to_async

from durable_sessions import service
from tests.factories import anonymous_session
from tests.live import server_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.timeout(240)]

db = database_sync_to_async

MESSAGE_CHARS = 16_000
MESSAGES = 1_250  # about 20 MB of log
SLOW_SOCKETS = int(os.environ.get("DS_SLOW_SOCKETS", "200"))
# Generous: a connection may hold its send buffer, one frame and two pages of the log.
BOUND_PER_SOCKET = 4 * 1024 * 1024
BOUND_FIXED = 80 * 1024 * 1024


# One visitor opens all of these sockets: its connection limits would refuse most of them.
NO_CONNECTION_LIMITS = {"LIMIT_CONNECTIONS_PER_VISITOR": 0, "LIMIT_CONNECTIONS_PER_SESSION": 0}


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def big_session(messages: int) -> tuple[str, str, int]:
    """A session of ``messages`` long customer messages, queued for a human (no agent)."""
    session, store = anonymous_session()
    customer = service.participant_for(session.id, "customer")
    service.request_handoff(session.id, by=customer)
    for i in range(messages):
        body = (f"{i:05d} " + "abcdefghij" * (MESSAGE_CHARS // 10))[:MESSAGE_CHARS]
        service.post_message(session.id, author=customer, content=body, client_id=f"c{i}")
    session.refresh_from_db()
    return str(session.id), f"sessionid={store.session_key}", session.last_seq


def raw_websocket(server, path: str, cookie: str) -> socket.socket:
    """A websocket handshake on a socket with a 4 KiB receive buffer; nothing read after."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {server.http}\r\nCookie: {cookie}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: leave the frames in the buffer
    assert head.startswith(b"HTTP/1.1 101"), head[:100]
    return sock


class FrameReader:
    """Server-to-client websocket frames from a raw socket (unmasked, text, no fragments)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def next(self) -> tuple[int, bytes]:
        first, second = self._take(2)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(self._take(2), "big")
        elif size == 127:
            size = int.from_bytes(self._take(8), "big")
        return first & 0x0F, self._take(size)


def events_until_live(reader: FrameReader) -> tuple[list[int], dict]:
    seqs: list[int] = []
    while True:
        opcode, payload = reader.next()
        if opcode != 1:
            continue  # ping
        frame = json.loads(payload)
        if frame["type"] == "events":
            seqs += [e["seq"] for e in frame["events"]]
        elif "seq" in frame and "at" in frame:
            seqs.append(frame["seq"])
        elif frame["type"] == "live":
            return seqs, frame


async def settled_rss(pid: int, quiet: float = 3.0, limit: float = 60.0) -> int:
    """The process's RSS once it has stopped growing for ``quiet`` seconds."""
    deadline = time.monotonic() + limit
    peak, since = rss(pid), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = rss(pid)
        if now > peak + 2 * 1024 * 1024:
            peak, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return max(peak, now)
    return max(peak, rss(pid))


async def test_clients_that_never_read_cost_bounded_memory_and_resume_exactly(daphne):
    env = server_env(ds_settings={"SLOW_CLIENT_TIMEOUT": 30.0, **NO_CONNECTION_LIMITS})
    server = daphne(env)
    session_id, cookie, last_seq = await db(big_session)(MESSAGES)
    pid = server.process.pid
    # Warm up (imports, first queries) with one reader that reads everything.
    async with websockets.connect(
        f"{server.ws}/ws/sessions/{session_id}/?after_seq={last_seq - 1}",
        origin=server.http,
        additional_headers={"Cookie": cookie},
    ) as ws:
        while json.loads(await ws.recv())["type"] != "live":
            pass
    before = await settled_rss(pid, quiet=1.0)

    path = f"/ws/sessions/{session_id}/?after_seq=0&batch=1"
    started = time.monotonic()
    slow = [raw_websocket(server, path, cookie) for _ in range(SLOW_SOCKETS)]
    loaded = await settled_rss(pid)
    growth = loaded - before
    print(
        f"\n{SLOW_SOCKETS} non-reading sockets on a {MESSAGES * MESSAGE_CHARS / 1e6:.0f} MB "
        f"session: RSS {before / 2**20:.0f} -> {loaded / 2**20:.0f} MiB "
        f"(+{growth / 2**20:.0f} MiB, {growth / SLOW_SOCKETS / 2**10:.0f} KiB per socket) "
        f"after {time.monotonic() - started:.1f} s"
    )
    assert growth < BOUND_FIXED + SLOW_SOCKETS * BOUND_PER_SOCKET

    # A paused client that starts reading gets the whole log, in order, then live. (A
    # socket of its own, paused for a moment: the others may be near SLOW_CLIENT_TIMEOUT
    # by now on a busy machine.)
    reader = raw_websocket(server, path, cookie)
    await asyncio.sleep(2)
    seqs, live = await asyncio.to_thread(events_until_live, FrameReader(reader))
    assert seqs == list(range(1, last_seq + 1)) and live["last_seq"] == last_seq
    reader.close()

    # The others are closed once SLOW_CLIENT_TIMEOUT has passed, and their memory freed.
    log = server.log
    deadline = time.monotonic() + 60
    while log.read_text(errors="replace").count("stopped reading") < SLOW_SOCKETS:
        assert time.monotonic() < deadline, "slow clients were not closed"
        await asyncio.sleep(1)
    for sock in slow:
        sock.close()
    after = await settled_rss(pid, quiet=2.0)
    print(f"after the closes: RSS {after / 2**20:.0f} MiB")

    # A client cut off that way resumes exactly where it was.
    resume_at = last_seq // 2
    async with websockets.connect(
        f"{server.ws}/ws/sessions/{session_id}/?after_seq={resume_at}&batch=1",
        origin=server.http,
        additional_headers={"Cookie": cookie},
        max_size=None,
    ) as ws:
        got: list[int] = []
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if frame["type"] == "events":
                got += [e["seq"] for e in frame["events"]]
            elif frame["type"] == "live":
                break
        assert got == list(range(resume_at + 1, last_seq + 1))
    assert "Traceback" not in log.read_text(errors="replace")


async def test_a_storm_of_closing_clients_logs_no_traceback_and_leaves_no_presence(daphne):
    env = server_env(ds_settings={"PRESENCE_SWEEP": 0.3, **NO_CONNECTION_LIMITS})
    server = daphne(env)
    session_id, cookie, _ = await db(big_session)(20)
    url = f"{server.ws}/ws/sessions/{session_id}/?after_seq=0"
    headers = {"Cookie": cookie}

    async def open_one():
        return await websockets.connect(
            url, origin=server.http, additional_headers=headers, max_size=None, close_timeout=0.5
        )

    clients = []
    for _ in range(3):  # waves: clients closing during connect, catch-up and live
        wave = await asyncio.gather(*(open_one() for _ in range(40)))
        # Half leave at once, mid-replay: a close frame while the server is sending.
        await asyncio.gather(*(ws.close() for ws in wave[::2]))
        clients += wave[1::2]
        await asyncio.sleep(0.2)
    await asyncio.gather(*(ws.close() for ws in clients))
    await asyncio.sleep(2)

    async with websockets.connect(url, origin=server.http, additional_headers=headers) as ws:
        deadline = time.monotonic() + 20
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
            presence = frame.get("presence", frame) if frame["type"] != "events" else {}
            if presence.get("type") == "presence" and presence["customer"]["devices"] == 1:
                break
            assert time.monotonic() < deadline, f"ghost presence: {presence}"
    text = server.log.read_text(errors="replace")
    assert "Traceback" not in text and "closed protocol" not in text
