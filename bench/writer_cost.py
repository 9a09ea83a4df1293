"""What a delta costs the durable writer and PostgreSQL: ``python -m bench.writer_cost``.

Streams stamped deltas (``--streams`` streams at 25 Hz for ``--seconds``, ``--rounds``
times) through ``service.delta_writer`` in this process, on the benchmark database and
the Redis pub/sub layer, as ``bench.writer`` does in the overhead measurement but with no
server and no clients: only the write path. Per round it prints the CPU time per delta
of each thread of this process (the event loop, the database thread), of PostgreSQL's
backends on the benchmark database (``/proc/<pid>/stat``: user time, and system time
apart), the group commit's batches and the time from ``append`` to its seq.

A tool for finding what to cut and for A/B comparisons of the same load, not a
measurement of record: on a shared machine compare CPU per delta, not latency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.config import DATABASE, database_url, process_env
from bench.plan import RATE_HZ


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread of this process, by name."""
    out = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            out[thread.name] = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except OSError:
            continue
    return out


def _backend_cpu() -> dict[int, tuple[float, float]]:
    """(user, system) CPU seconds of each PostgreSQL backend on the benchmark database."""
    import psycopg

    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        pids = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", [DATABASE]
            )
        ]
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        out[pid] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return out


class _Counting:
    """Counts the group commit's batches and times each ``append``."""

    def __init__(self) -> None:
        from durable_sessions.service import deltas

        self.batches = 0
        self.deltas = 0
        self.latencies: list[float] = []
        write_batch: Callable[..., Any] = deltas.write_batch
        append = deltas.DeltaWriter.append

        def counted(batch: list[Any]) -> Any:
            self.batches += 1
            self.deltas += len(batch)
            return write_batch(batch)

        async def timed(writer: Any, *args: Any, **kwargs: Any) -> int:
            started = time.perf_counter()
            try:
                return await append(writer, *args, **kwargs)
            finally:
                self.latencies.append(time.perf_counter() - started)

        deltas.write_batch = counted
        deltas.DeltaWriter.append = timed  # type: ignore[method-assign]

    def take(self) -> tuple[int, int, list[float]]:
        taken = (self.batches, self.deltas, sorted(self.latencies))
        self.batches, self.deltas, self.latencies = 0, 0, []
        return taken


async def _measure(sessions: list[str], seconds: float, rounds: int) -> None:
    from bench.writer import DurableWriter

    counting = _Counting()
    writer = DurableWriter()
    await writer.prepare(sessions, fresh=True)
    await writer.stream({"sessions": sessions, "rate_hz": RATE_HZ, "duration": 1.0})  # warm
    counting.take()
    try:
        for index in range(rounds):
            threads, backends = _thread_cpu(), _backend_cpu()
            result = await writer.stream(
                {"sessions": sessions, "rate_hz": RATE_HZ, "duration": seconds}
            )
            threads_after, backends_after = _thread_cpu(), _backend_cpu()
            written = max(result["written"], 1)
            batches, deltas, latencies = counting.take()
            per_thread = ", ".join(
                f"{name} {(cpu - threads.get(name, 0.0)) / written * 1e6:.0f}"
                for name, cpu in threads_after.items()
                if cpu - threads.get(name, 0.0) > 0.01
            )
            user = sum(u - backends[p][0] for p, (u, _) in backends_after.items() if p in backends)
            system = sum(
                s - backends[p][1] for p, (_, s) in backends_after.items() if p in backends
            )
            p50 = latencies[len(latencies) // 2] * 1e3 if latencies else 0.0
            p99 = latencies[int(len(latencies) * 0.99)] * 1e3 if latencies else 0.0
            print(
                f"round {index + 1}: {result['written']} deltas ({result['skipped']} skipped, "
                f"{len(result['errors'])} errors) in {batches} batches "
                f"({deltas / max(batches, 1):.1f} deltas each)\n"
                f"  writer CPU µs per delta: {per_thread}\n"
                f"  PostgreSQL backends CPU µs per delta: user {user / written * 1e6:.0f}, "
                f"system {system / written * 1e6:.0f}\n"
                f"  append to seq: p50 {p50:.1f} ms, p99 {p99:.1f} ms",
                flush=True,
            )
    finally:
        await writer.finish(list(writer.messages))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.environ.update(process_env(layer="redis"))
    import django

    django.setup()
    from bench import pool

    asyncio.run(_measure(pool.sessions(args.streams), args.seconds, args.rounds))


if __name__ == "__main__":
    main()
