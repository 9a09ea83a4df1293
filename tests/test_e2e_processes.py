"""Exact delivery across real processes: Daphne servers, websocket clients, a writer process.

Every test here runs real ``daphne`` processes on the test database and real websocket
clients (the ``websockets`` package). Assistant replies are streamed by a separate writer
process (``tests/stream_writer.py``) that writes through the session service, as an agent
worker does, so the stream goes on whatever happens to the servers. The guarantees proved:

- a client on one process sees, live and in order, what is written through another process
  and by the writer (two processes sharing PostgreSQL and Redis);
- a client whose server is killed (``kill -9``) mid-stream resumes on the other process with
  ``after_seq`` and ends with exactly the whole stream;
- the same across a restart of the only server on the same port;
- every client gets every event in order when channels-redis drops wake-ups (core layer with
  a capacity of 1).

Seq lists are compared with ``range(...)``, which proves at once: no gap, no duplicate,
strictly +1. No timing is asserted; timeouts only keep a failing test from hanging.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import websockets
from channels.db import database_sync_to_async
from django.contrib.sessions.backends.db import SessionStore
from websockets.asyncio.client import ClientConnection

from durable_sessions import wire
from durable_sessions.models import DurableSession
from tests.factories import anonymous_session
from tests.live import ROOT, DaphneServer, server_env
from tests.stream_writer import chunks

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.e2e,
    pytest.mark.timeout(60),
]

db = database_sync_to_async

# Upper bounds that only turn a hang into a failure; nothing is asserted about speed.
READ_TIMEOUT = 20.0
WRITER_TIMEOUT = 30.0
MAX_FRAMES = 5000

Frame = dict[str, Any]


def is_event(frame: Frame) -> bool:
    """A log event (``{type, seq, at, data}``), as opposed to ack, live, snapshot, error..."""
    return frame.get("type") in wire.ALL_TYPES and isinstance(frame.get("seq"), int)


def seqs(events: list[Frame]) -> list[int]:
    return [e["seq"] for e in events]


def delta_text(events: list[Frame]) -> str:
    return "".join(e["data"]["text"] for e in events if e["type"] == wire.MESSAGE_DELTA)


def contents(events: list[Frame], role: str) -> list[str]:
    return [
        e["data"]["message"]["content"]
        for e in events
        if e["type"] == wire.MESSAGE_CREATED and e["data"]["message"]["role"] == role
    ]


class Client:
    """One real websocket connection to a session; records the log events and acks it gets."""

    def __init__(self, ws: ClientConnection, after_seq: int) -> None:
        self.ws = ws
        self.after_seq = after_seq
        self.replayed: list[Frame] = []  # events sent before the ``live`` frame
        self.events: list[Frame] = []  # every event, replayed and live, in arrival order
        self.acks: list[Frame] = []
        self.errors: list[Frame] = []
        self.states: list[Frame] = []  # frames outside the log, e.g. agent status changes

    @classmethod
    async def open(
        cls, server: DaphneServer, session_id: UUID, store: SessionStore, after_seq: int = 0
    ) -> Client:
        """Connect with the owner's cookie and read the snapshot, the replay and ``live``."""
        ws = await websockets.connect(
            f"{server.ws}/ws/sessions/{session_id}/?after_seq={after_seq}",
            origin=server.http,
            additional_headers={"Cookie": f"sessionid={store.session_key}"},
            open_timeout=READ_TIMEOUT,
        )
        client = cls(ws, after_seq)
        first = await client._next()
        assert first["type"] == "snapshot", first
        assert first["after_seq"] == after_seq
        async with asyncio.timeout(READ_TIMEOUT):
            for _ in range(MAX_FRAMES):
                frame = await client._next()
                if frame["type"] == "live":
                    assert frame["last_seq"] == client.last_seq
                    client.replayed = list(client.events)
                    return client
                client._record(frame)
        raise AssertionError("no live frame")

    @property
    def last_seq(self) -> int:
        return self.events[-1]["seq"] if self.events else self.after_seq

    async def _next(self) -> Frame:
        async with asyncio.timeout(READ_TIMEOUT):
            return json.loads(await self.ws.recv())

    def _record(self, frame: Frame) -> None:
        if is_event(frame):
            self.events.append(frame)
        elif frame["type"] == "ack":
            self.acks.append(frame)
        elif frame["type"] == "error":
            self.errors.append(frame)
        else:
            assert "seq" not in frame, f"a log event of unknown type: {frame}"
            self.states.append(frame)

    async def read_until(self, done: Callable[[Client], bool]) -> None:
        """Read frames until ``done(self)``; fail after READ_TIMEOUT or MAX_FRAMES."""
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                for _ in range(MAX_FRAMES):
                    if done(self):
                        return
                    self._record(json.loads(await self.ws.recv()))
        except TimeoutError:
            raise AssertionError(
                f"still waiting after {READ_TIMEOUT} s: {len(self.events)} events received, "
                f"last seq {self.last_seq}, {len(self.acks)} acks"
            ) from None
        raise AssertionError(f"gave up after {MAX_FRAMES} frames")

    async def read_through(self, seq: int) -> None:
        await self.read_until(lambda c: c.last_seq >= seq)

    async def read_until_closed(self) -> None:
        """Record whatever the server got out before its connection broke."""
        try:
            await self.read_until(lambda c: False)
        except websockets.ConnectionClosed:
            return

    async def assert_quiet(self, seconds: float = 0.5) -> None:
        """Nothing more arrives for a moment: in particular no event is sent a second time."""
        extra: list[Frame] = []
        try:
            async with asyncio.timeout(seconds):
                for _ in range(MAX_FRAMES):
                    extra.append(json.loads(await self.ws.recv()))
        except TimeoutError:
            pass
        assert not [frame for frame in extra if is_event(frame)], extra

    async def send_message(self, content: str, client_id: str) -> None:
        await self.ws.send(
            json.dumps({"type": "message.send", "content": content, "client_id": client_id})
        )

    async def close(self) -> None:
        await self.ws.close()


class Writer:
    """The ``tests.stream_writer`` process: one assistant reply, written independently."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log  # its stderr: a file, so that no amount of output can block it
        self.paused_at: int | None = None

    async def _line(self) -> Frame:
        async with asyncio.timeout(WRITER_TIMEOUT):
            raw = await self.process.stdout.readline()  # type: ignore[union-attr]
        if not raw:
            await self.process.wait()
            raise AssertionError(f"the writer exited early:\n{self.log.read_text()}")
        return json.loads(raw)

    async def wait_paused(self) -> int:
        """Wait until the writer has written its ``--pause-after`` delta; return that seq."""
        for _ in range(3):
            line = await self._line()
            if "paused" in line:
                self.paused_at = line["paused"]
                return self.paused_at
        raise AssertionError("the writer did not pause")

    async def resume(self) -> None:
        self.process.stdin.write(b"go\n")  # type: ignore[union-attr]
        await self.process.stdin.drain()  # type: ignore[union-attr]

    async def finish(self) -> Frame:
        """Wait for the end of the stream; returns the summary (``last_seq``, ``dropped``)."""
        async with asyncio.timeout(WRITER_TIMEOUT):
            out, _ = await self.process.communicate()
        assert self.process.returncode == 0, self.log.read_text()
        return json.loads(out.decode().splitlines()[-1])


StartWriter = Callable[..., Awaitable[Writer]]
StartServer = Callable[..., DaphneServer]  # the ``daphne`` fixture of tests/conftest.py


@pytest.fixture
async def writer() -> AsyncIterator[StartWriter]:
    """Starts stream writer processes; kills any still running after the test."""
    started: list[Writer] = []

    async def start(
        env: dict[str, str],
        session_id: UUID,
        *,
        count: int,
        delay: float = 0.0,
        pause_after: int = 0,
    ) -> Writer:
        log = ROOT / "test-artifacts" / f"stream-writer-{session_id}.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.stream_writer",
                str(session_id),
                f"--chunks={count}",
                f"--delay={delay}",
                f"--pause-after={pause_after}",
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        started.append(Writer(process, log))
        return started[-1]

    yield start
    for running in started:
        if running.process.returncode is None:
            running.process.kill()
            await running.process.wait()


def process_env(redis_url: str | None = None, **ds_settings: Any) -> dict[str, str]:
    """Environment of the servers and the writer, on this test run's database.

    Agent runs execute only in worker processes (``RUNNER: worker``) and none is started:
    the stream writer is the one agent here, so no other reply answers the phone's messages.
    """
    return server_env(redis_url=redis_url, ds_settings={"RUNNER": "worker", **ds_settings})


def stream_seqs(start: int, count: int) -> list[int]:
    """Seqs of a stream opened at ``start``: message.created, ``count`` deltas, completed."""
    return list(range(start, start + count + 2))


async def last_seq(session_id: UUID) -> int:
    return await db(DurableSession.objects.values_list("last_seq", flat=True).get)(pk=session_id)


# --- two processes sharing PostgreSQL and Redis ------------------------------------------------


async def test_a_client_on_one_process_sees_live_everything_written_through_the_other(
    daphne: StartServer, postgres: None, redis_url: str, writer: StartWriter
) -> None:
    """A laptop on process A sees, live and in order, the messages a phone of the same owner
    sends through process B, interleaved with a reply streamed by the writer process.

    The periodic resync is set far beyond the test's time, so every event must reach A through
    a Redis wake-up: this is cross-process live delivery, not the database safety net.
    """
    env = process_env(redis_url, RESYNC_INTERVAL=300)
    a, b = daphne(env), daphne(env)
    session, store = await db(anonymous_session)()
    laptop = await Client.open(a, session.id, store)
    phone = await Client.open(b, session.id, store)
    assert seqs(laptop.replayed) == seqs(phone.replayed) == [1]

    count, sent = 60, 8
    stream = await writer(env, session.id, count=count, delay=0.005, pause_after=30)
    paused_at = await stream.wait_paused()
    # The phone's messages land in the middle of the reply, while it is paused.
    for i in range(sent):
        await phone.send_message(f"from the phone {i}", f"phone-{i}")
    await phone.read_until(lambda c: len(c.acks) == sent)
    assert not phone.errors
    assert [ack["seq"] for ack in phone.acks] == list(range(paused_at + 1, paused_at + sent + 1))
    await stream.resume()
    summary = await stream.finish()
    final = summary["last_seq"]
    assert final == 1 + sent + count + 2

    for client in (laptop, phone):
        await client.read_through(final)
        await client.assert_quiet()
        assert seqs(client.events) == list(range(1, final + 1))
    live = laptop.events[1:]
    assert [(e["seq"], e["type"], e["data"]) for e in live] == [
        (e["seq"], e["type"], e["data"]) for e in phone.events[1:]
    ]
    assert contents(live, "user") == [f"from the phone {i}" for i in range(sent)]
    assert delta_text(live) == "".join(chunks(count))
    assert live[-1]["type"] == wire.MESSAGE_COMPLETED
    for client in (laptop, phone):
        await client.close()


async def test_a_client_resumes_exactly_on_another_process_after_its_own_is_killed(
    daphne: StartServer, postgres: None, redis_url: str, writer: StartWriter
) -> None:
    """``kill -9`` of process A in the middle of a long stream: the client reconnects to B
    with ``after_seq`` = the last seq it saw and ends with exactly the whole stream, once.

    The writer pauses after a known delta and is let go only once A is dead, so the rest of
    the stream is written while A is down. An observer connected to B throughout gets it all.
    """
    env = process_env(redis_url)
    a, b = daphne(env), daphne(env)
    session, store = await db(anonymous_session)()
    client = await Client.open(a, session.id, store)
    observer = await Client.open(b, session.id, store)

    count = 100
    final = stream_seqs(2, count)[-1]
    stream = await writer(env, session.id, count=count, delay=0.005, pause_after=60)
    await client.read_through(2 + 20)  # the writer is streaming (or pausing), A delivering
    a.kill()
    await client.read_until_closed()
    seen = client.last_seq
    assert 2 + 20 <= seen < final
    await stream.wait_paused()
    await stream.resume()  # from here on, the stream is written while A is dead

    again = await Client.open(b, session.id, store, after_seq=seen)
    summary = await stream.finish()
    assert summary["last_seq"] == final
    await again.read_through(final)
    await again.assert_quiet()

    events = client.events + again.events
    assert seqs(events) == list(range(1, final + 1))
    assert delta_text(events) == "".join(chunks(count))
    await observer.read_through(final)
    assert [(e["seq"], e["data"]) for e in observer.events] == [
        (e["seq"], e["data"]) for e in events
    ]
    for open_client in (again, observer):
        await open_client.close()


# --- a restart of the only server ----------------------------------------------------------


async def _resume_across_a_restart(
    daphne: StartServer, writer: StartWriter, env: dict[str, str]
) -> None:
    server = daphne(env)
    session, store = await db(anonymous_session)()
    client = await Client.open(server, session.id, store)
    count = 80
    final = stream_seqs(2, count)[-1]
    stream = await writer(env, session.id, count=count, delay=0.005, pause_after=50)
    await client.read_through(2 + 5)
    server.kill()
    await client.read_until_closed()
    seen = client.last_seq
    assert seen < final
    await stream.wait_paused()
    await stream.resume()  # the rest is written while no server runs

    restarted = daphne(env, port=server.port)
    again = await Client.open(restarted, session.id, store, after_seq=seen)
    summary = await stream.finish()
    assert summary["last_seq"] == final == await last_seq(session.id)
    await again.read_through(final)
    await again.assert_quiet()
    events = client.events + again.events
    assert seqs(events) == list(range(1, final + 1))
    assert delta_text(events) == "".join(chunks(count))
    assert events[-1]["type"] == wire.MESSAGE_COMPLETED
    await again.close()


async def test_a_client_resumes_exactly_after_the_server_restarts_in_memory_layer(
    daphne: StartServer, writer: StartWriter
) -> None:
    """The only server is killed mid-stream and started again on the same port; the client
    reconnects with ``after_seq`` and gets exactly the rest.

    Configured database (SQLite or PostgreSQL) and the in-memory layer: the writer process
    cannot wake the server, so live events come from the periodic resync (0.5 s here).
    """
    await _resume_across_a_restart(daphne, writer, process_env())


async def test_a_client_resumes_exactly_after_the_server_restarts_with_redis(
    daphne: StartServer, redis_url: str, writer: StartWriter
) -> None:
    """As above, with the Redis pub/sub layer: the writer's wake-ups reach the new process."""
    await _resume_across_a_restart(daphne, writer, process_env(redis_url))


# --- a channel layer that drops ------------------------------------------------------------


async def test_every_client_gets_every_event_when_the_redis_layer_drops_wake_ups(
    daphne: StartServer, postgres: None, redis_url: str, writer: StartWriter
) -> None:
    """channels-redis' core layer with a capacity of 1, two processes, four clients: every
    client still ends with every event, in order, once.

    To make the loss certain rather than likely, process A is stalled (``SIGSTOP``, as a long
    pause or a starved CPU would) while the writer streams and the phone sends messages
    through B: A's channel holds one message, every other wake-up for it is dropped. When A
    runs again its clients must recover the rest from the database.
    """
    env = process_env(redis_url)
    env.update(REDIS_LAYER="core", REDIS_CAPACITY="1")
    a, b = daphne(env), daphne(env)
    session, store = await db(anonymous_session)()
    clients = [await Client.open(server, session.id, store) for server in (a, a, b, b)]
    phone = clients[-1]

    count, sent, stalled = 80, 10, 10
    stream = await writer(env, session.id, count=count, pause_after=30)
    paused_at = await stream.wait_paused()
    a.process.send_signal(signal.SIGSTOP)
    try:
        await stream.resume()
        for i in range(sent):
            await phone.send_message(f"while A stalls {i}", f"m-{i}")
        # B delivers live meanwhile: these events were all published while A was stopped.
        await phone.read_until(
            lambda c: len(c.acks) == sent and c.last_seq >= paused_at + sent + stalled
        )
    finally:
        a.process.send_signal(signal.SIGCONT)
    summary = await stream.finish()
    final = await last_seq(session.id)
    assert final == 1 + sent + count + 2
    assert not phone.errors

    for client in clients:
        await client.read_through(final)
        await client.assert_quiet()
        assert seqs(client.events) == list(range(1, final + 1))
        assert delta_text(client.events) == "".join(chunks(count))
        assert contents(client.events, "user") == [f"while A stalls {i}" for i in range(sent)]
        await client.close()
    # The layer did drop: the writer's own wake-ups for A were refused past capacity.
    assert summary["dropped"] > 0, summary
