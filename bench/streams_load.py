"""Load for the Durable Streams benchmark, the same against any server of the protocol.

Appends: ``writers`` streams written at once, each by one client appending ``appends``
bodies of ``BODY`` bytes one after the other. Catch-up: one stream of ``catchup`` appends
read from ``-1`` to the tail, chunk after chunk. Live follow: a long-polling reader and a
writer appending a timestamp every ``INTERVAL`` seconds; the latency of an append is the
time from just before its POST to the reader holding it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

BODY = b"x" * 100
INTERVAL = 0.02


def _path(base: str, kind: str) -> str:
    return f"{base}/v1/stream/bench-{kind}-{uuid.uuid4().hex[:12]}"


async def appends(base: str, writers: int, count: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=writers * 2)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        urls = [_path(base, "append") for _ in range(writers)]
        for url in urls:
            (await client.put(url, headers={"Content-Type": "text/plain"})).raise_for_status()

        async def write(url: str) -> None:
            for _ in range(count):
                response = await client.post(
                    url, content=BODY, headers={"Content-Type": "text/plain"}
                )
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(write(url) for url in urls))
        seconds = time.perf_counter() - started
    return {"appends": writers * count, "seconds": seconds, "per_second": writers * count / seconds}


async def catchup(base: str, count: int, repeats: int) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=120) as client:
        url = _path(base, "catchup")
        (await client.put(url, headers={"Content-Type": "text/plain"})).raise_for_status()
        for _ in range(count):
            await client.post(url, content=BODY, headers={"Content-Type": "text/plain"})
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            offset, total = "-1", 0
            while True:
                response = await client.get(url, params={"offset": offset})
                response.raise_for_status()
                total += len(response.content)
                offset = response.headers["Stream-Next-Offset"]
                if response.headers.get("Stream-Up-To-Date") == "true":
                    break
            times.append(time.perf_counter() - started)
            if total != count * len(BODY):
                raise RuntimeError(f"read {total} bytes, not {count * len(BODY)}")
    best = min(times)
    return {"appends": count, "seconds": times, "mb_per_second": count * len(BODY) / best / 1e6}


async def live_follow(base: str, count: int) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=60) as client:
        url = _path(base, "live")
        created = await client.put(url, headers={"Content-Type": "application/json"}, content=b"[]")
        created.raise_for_status()
        sent: dict[int, float] = {}
        latencies: list[float] = []

        async def read() -> None:
            offset = created.headers["Stream-Next-Offset"]
            while len(latencies) < count:
                response = await client.get(url, params={"offset": offset, "live": "long-poll"})
                now = time.perf_counter()
                offset = response.headers["Stream-Next-Offset"]
                if response.status_code == 200:
                    for item in response.json():
                        latencies.append(now - sent[item["n"]])

        async def write() -> None:
            for n in range(count):
                sent[n] = time.perf_counter()
                await client.post(url, json={"n": n})
                await asyncio.sleep(INTERVAL)

        await asyncio.wait_for(asyncio.gather(read(), write()), 300)
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    return {
        "follows": len(ms),
        "median_ms": ms[len(ms) // 2],
        "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
    }


async def run_all(base: str, sizes: dict[str, int]) -> dict[str, Any]:
    return {
        "appends": await appends(base, sizes["writers"], sizes["appends"]),
        "catchup": await catchup(base, sizes["catchup"], 3),
        "live": await live_follow(base, sizes["live"]),
    }
