"""Where the memory of idle connections goes: ``python -m bench.memprobe [--connections N]``.

Starts one Daphne process of the demo project (PostgreSQL, Redis pub/sub) with
``tracemalloc`` on, opens a warm-up connection, takes a snapshot, opens ``N`` more idle
connections (three per session, as the benchmarks do), lets them settle, takes another,
and prints the allocation sites that grew, in bytes per connection. A tool for finding
what to cut, not a measurement of record: tracemalloc itself costs memory and time.

``--relay`` probes the bare Channels relay (``bench/relay/``) the same way, for comparison;
``--depth`` sets how many frames each allocation keeps (more frames: finer attribution,
dearer tracing); ``--depth 0`` turns tracemalloc off and reports only the growth of the
process's RSS, which is what the connections measurement compares.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import socket
import sys
import time
import tracemalloc
from pathlib import Path

from bench.config import ARTIFACTS, HOST, process_env
from bench.plan import DEVICES

SNAPSHOTS = ARTIFACTS / "memprobe"


RELAY_APP = "bench.relay.asgi:application"
DURABLE_APP = "project.asgi:application"


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def serve(port: int, app: str, depth: int) -> None:
    """(In the server process) Daphne, with tracemalloc unless ``depth`` is 0; SIGUSR1
    writes a snapshot (and the RSS at that moment)."""
    if depth:
        tracemalloc.start(depth)
    count = [0]

    def snapshot(signum: int, frame: object) -> None:
        gc.collect()
        count[0] += 1
        SNAPSHOTS.mkdir(parents=True, exist_ok=True)
        if depth:
            tracemalloc.take_snapshot().dump(str(SNAPSHOTS / f"snap{count[0]}.bin"))
        (SNAPSHOTS / f"snap{count[0]}.done").write_text(str(_rss_bytes()))

    signal.signal(signal.SIGUSR1, snapshot)
    from daphne.cli import CommandLineInterface

    CommandLineInterface().run(["-v", "0", "-b", HOST, "-p", str(port), app])


async def _open(urls: list[str], cookie: str, *, durable: bool = True) -> list[object]:
    import websockets

    sockets = []
    headers = {"Cookie": f"sessionid={cookie}"}
    for url in urls:
        origin = "http://" + url.split("//", 1)[1].split("/", 1)[0]  # the server's own
        ws = await websockets.connect(
            url,
            additional_headers=headers,
            origin=origin,  # type: ignore[arg-type]
            max_size=None,
        )
        while durable:  # until the replay is done (the relay sends nothing)
            frame = await asyncio.wait_for(ws.recv(), 30)
            if '"live"' in frame:
                break
        sockets.append(ws)
    return sockets


def _listening(port: int, timeout: float = 180) -> None:
    """Wait until the server accepts connections (tracemalloc makes its start slow)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), 0.5):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the server did not listen on {port}")


def _wait_for(path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memprobe")
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--stacks", action="store_true", help="group by call stack")
    parser.add_argument("--relay", action="store_true", help="probe the bare Channels relay")
    parser.add_argument(
        "--depth", type=int, default=4, help="frames per traced allocation; 0: RSS only"
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--app", default=DURABLE_APP, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.app, args.depth)
        return 0

    import subprocess

    from bench import pool, services
    from bench.procs import free_port

    services.prepare()
    pool.setup_django()
    cookie = pool.cookie()
    sessions = pool.sessions(-(-args.connections // DEVICES) + 1)
    after = pool.last_seqs(sessions)
    for old in SNAPSHOTS.glob("snap*"):
        old.unlink()
    port = free_port()
    env = process_env(layer="redis")
    SNAPSHOTS.mkdir(parents=True, exist_ok=True)
    log = (SNAPSHOTS / "server.log").open("w")
    app = RELAY_APP if args.relay else DURABLE_APP
    command = ["--serve", str(port), "--app", app, "--depth", str(args.depth)]
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.memprobe", *command],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _listening(port)

        def url(session: str) -> str:
            if args.relay:
                return f"ws://{HOST}:{port}/ws/relay/{session}/"
            return f"ws://{HOST}:{port}/ws/sessions/{session}/?after_seq={after[session]}&batch=1"

        async def run() -> None:
            warm = await _open([url(sessions[0])], cookie, durable=not args.relay)
            await asyncio.sleep(2)
            os.kill(server.pid, signal.SIGUSR1)
            await asyncio.to_thread(_wait_for, SNAPSHOTS / "snap1.done")
            urls = [url(sessions[1 + i // DEVICES]) for i in range(args.connections)]
            held = await _open(urls, cookie, durable=not args.relay)
            await asyncio.sleep(5)
            os.kill(server.pid, signal.SIGUSR1)
            await asyncio.to_thread(_wait_for, SNAPSHOTS / "snap2.done")
            for ws in [*warm, *held]:
                await ws.close()  # type: ignore[attr-defined]

        asyncio.run(run())
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    n = args.connections
    rss = [int((SNAPSHOTS / f"snap{i}.done").read_text()) for i in (1, 2)]
    what = "bare relay" if args.relay else "durable consumer"
    print(f"{what}: RSS grew {(rss[1] - rss[0]) / n:,.0f} bytes per idle connection")
    if not args.depth:
        return 0
    before = tracemalloc.Snapshot.load(str(SNAPSHOTS / "snap1.bin"))
    after_snap = tracemalloc.Snapshot.load(str(SNAPSHOTS / "snap2.bin"))
    stats = after_snap.compare_to(before, "traceback" if args.stacks else "lineno")
    total = sum(s.size_diff for s in stats)
    print(f"traced growth: {total / n:,.0f} bytes per idle connection ({n} connections)")
    for stat in stats[: args.top]:
        frame = stat.traceback[0]
        where = frame.filename.split("site-packages/")[-1].replace(str(Path.cwd()) + "/", "")
        per = f"{stat.size_diff / n:8,.0f} B {stat.count_diff / n:6.1f} blocks"
        print(f"{per}  {where}:{frame.lineno}")
        for caller in list(stat.traceback)[1:] if args.stacks else []:
            name = caller.filename.split("site-packages/")[-1]
            print(f"{'':26}<- {name.replace(str(Path.cwd()) + '/', '')}:{caller.lineno}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
