"""Paced streams of stamped deltas, shared by the durable writer and the relay publisher.

Each stream sends one delta every ``1 / rate_hz`` seconds (40 ms at 25 Hz, like the agent
runtime's FLUSH_INTERVAL_MS), the streams' phases spread evenly. The text of each delta
starts with the wall-clock time it was flushed, which the clients subtract from the
time they receive it.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Awaitable, Callable
from typing import Any

# About six tokens: what an LLM at ~150 tokens/s produces in 40 ms.
FILLER = "and the order ships within two days"


def stamped_text() -> str:
    """Delta text that starts with the wall-clock time of the flush."""
    return f"{time.time():.6f} {FILLER}"


Send = Callable[[int], Awaitable[int]]

# Deltas of one stream still being written before its next tick is skipped.
MAX_IN_FLIGHT = 50


async def paced(
    count: int, send: Send, *, rate_hz: float, duration: float, lead: float = 0.5
) -> dict[str, Any]:
    """Run ``count`` streams for ``duration`` seconds; ``send(i)`` returns the seq written.

    Open loop: each tick sends without waiting for the previous delta of its stream to
    be written, so a slow sender shows as latency (and as a backlog), not as a lower
    offered rate. Returns the window (wall clock), the deltas written and skipped, the
    target, the highest seq per stream and the first errors.
    """
    interval = 1.0 / rate_hz
    start = time.time() + lead
    end = start + duration
    last: list[int | None] = [None] * count
    in_flight = [0] * count
    counts = {"written": 0, "skipped": 0}
    errors: list[str] = []
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int) -> None:
        try:
            seq = await send(index)
        except Exception as exc:
            if len(errors) < 5:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
        else:
            counts["written"] += 1
            last[index] = max(last[index] or 0, seq)
        finally:
            in_flight[index] -= 1

    ticks = [(start + interval * i / max(count, 1), i) for i in range(count)]
    heapq.heapify(ticks)
    loop = asyncio.get_running_loop()
    while ticks and ticks[0][0] < end:
        tick, index = heapq.heappop(ticks)
        delay = tick - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if in_flight[index] >= MAX_IN_FLIGHT:
            counts["skipped"] += 1
        else:
            in_flight[index] += 1
            task = loop.create_task(one(index))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        heapq.heappush(ticks, (tick + interval, index))
    if tasks:
        await asyncio.wait(set(tasks), timeout=120)
    return {
        "start": start,
        "end": end,
        "written": counts["written"],
        "skipped": counts["skipped"],
        "target": count * rate_hz * duration,
        "last": last,
        "errors": errors,
    }


async def spread(count: int, send: Send, *, seconds: float, lead: float = 0.5) -> dict[str, Any]:
    """Send one delta to each of ``count`` streams, evenly spread over ``seconds``."""
    start = time.time() + lead
    last: list[int | None] = [None] * count
    errors: list[str] = []

    async def one(index: int) -> None:
        delay = start + seconds * index / max(count, 1) - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            last[index] = await send(index)
        except Exception as exc:
            if len(errors) < 5:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])

    await asyncio.gather(*(one(i) for i in range(count)))
    return {
        "start": start,
        "end": time.time(),
        "written": sum(1 for seq in last if seq is not None),
        "target": count,
        "last": last,
        "errors": errors,
    }
