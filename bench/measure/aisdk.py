"""10. The AI SDK endpoints (docs/aisdk.md) beside the websocket.

Resume: one answer of ``aisdk_resume_deltas`` deltas, still streaming, is resumed from its
start by ``GET ai/chat/<id>/stream`` (counting ``text-delta`` chunks) and by a websocket
with ``after_seq`` just before the answer (counting ``message.delta`` events, replay
batched as client.js asks); time from the request to the last delta.

Concurrent streams: ``aisdk_streams`` sessions each with an answer being written at
``aisdk_rate_hz`` deltas per second by the writer process (group commit, Redis wake-ups);
first as many SSE answer streams, then as many websockets, follow them; what each path
delivered during the window against what was written.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from typing import Any

import httpx
import websockets

from bench import pool
from bench.measure import Context, Goal
from bench.measure.common import durable_servers, fmt
from bench.plan import Plan
from bench.procs import Supervisor
from bench.stats import median

NAME = "aisdk"
TITLE = "AI SDK endpoints: resume and concurrent streams"
RESUME_TITLE = "bench-aisdk-resume"
STREAMS_TITLE = "bench-aisdk-streams"


def _events(frame: dict[str, Any]) -> list[dict[str, Any]]:
    if frame.get("type") == "events":
        return frame["events"]
    return [frame] if "seq" in frame else []


async def _sse_deltas(
    client: httpx.AsyncClient, url: str, want: int | None, counts: list[int], i: int
) -> float:
    """Read an answer stream, counting text deltas (until ``want``, or until cancelled)."""
    started = time.perf_counter()
    async with client.stream("GET", url) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
        async for line in response.aiter_lines():
            if line.startswith("data: {") and '"text-delta"' in line:
                counts[i] += 1
                if want is not None and counts[i] >= want:
                    break
    return (time.perf_counter() - started) * 1000


async def _ws_deltas(
    url: str, cookie: str, origin: str, want: int | None, counts: list[int], i: int
) -> float:
    started = time.perf_counter()
    headers = {"Cookie": f"sessionid={cookie}"}
    async with websockets.connect(
        url, additional_headers=headers, origin=origin, max_size=None
    ) as ws:  # type: ignore[arg-type]
        async for raw in ws:
            for event in _events(json.loads(raw)):
                if event.get("type") == "message.delta":
                    counts[i] += 1
            if want is not None and counts[i] >= want:
                break
    return (time.perf_counter() - started) * 1000


async def _resume(
    http: str, ws: str, cookie: str, session: str, after: int, want: int, repeats: int
) -> dict[str, Any]:
    sse_ms, ws_ms = [], []
    cookies = {"sessionid": cookie}
    async with httpx.AsyncClient(cookies=cookies, timeout=60) as client:
        for _ in range(repeats + 1):  # the first is a warm-up
            counts = [0]
            sse_ms.append(
                await _sse_deltas(client, f"{http}/ds/ai/chat/{session}/stream", want, counts, 0)
            )
            counts = [0]
            url = f"{ws}/ws/sessions/{session}/?batch=1&after_seq={after}"
            ws_ms.append(await _ws_deltas(url, cookie, http, want, counts, 0))
    return {"sse_ms": [round(x, 1) for x in sse_ms[1:]], "ws_ms": [round(x, 1) for x in ws_ms[1:]]}


async def _follow_all(
    kind: str,
    http: str,
    ws: str,
    cookie: str,
    sessions: list[str],
    afters: dict[str, int],
    run_writer: Any,
) -> list[int]:
    counts = [0] * len(sessions)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(
        cookies={"sessionid": cookie}, timeout=None, limits=limits
    ) as client:
        if kind == "sse":
            tasks = [
                asyncio.ensure_future(
                    _sse_deltas(client, f"{http}/ds/ai/chat/{s}/stream", None, counts, i)
                )
                for i, s in enumerate(sessions)
            ]
        else:
            tasks = [
                asyncio.ensure_future(
                    _ws_deltas(
                        f"{ws}/ws/sessions/{s}/?batch=1&after_seq={afters[s]}",
                        cookie,
                        http,
                        None,
                        counts,
                        i,
                    )
                )
                for i, s in enumerate(sessions)
            ]
        await asyncio.sleep(2.0)  # every stream open and caught up
        baseline = list(counts)
        await asyncio.to_thread(run_writer)
        await asyncio.sleep(1.0)  # the last wake-ups arrive
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [c - b for c, b in zip(counts, baseline, strict=True)]


def measure(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    [resume_session] = pool.sessions(1, title=RESUME_TITLE)
    streams = pool.sessions(plan.aisdk_streams, title=STREAMS_TITLE)
    with Supervisor() as sup:
        servers, env = durable_servers(sup, "aisdk", layer="redis", processes=1)
        http, ws = servers[0].origin, servers[0].ws
        writer = sup.module("aisdk-writer", "bench.writer", env)
        grown = writer.request(
            {"cmd": "grow", "session": resume_session, "deltas": plan.aisdk_resume_deltas}, 600
        )
        after = grown["last_seq"] - plan.aisdk_resume_deltas - 1  # just before message.created
        resumed = asyncio.run(
            _resume(
                http,
                ws,
                ctx.cookie,
                resume_session,
                after,
                plan.aisdk_resume_deltas,
                plan.resume_repeats,
            )
        )
        writer.request({"cmd": "finish"}, 600)
        sse_ms, ws_ms = median(resumed["sse_ms"]), median(resumed["ws_ms"])
        ctx.log(f"  resume: SSE {sse_ms} ms, websocket {ws_ms} ms")

        delivered: dict[str, Any] = {}
        for kind in ("sse", "ws"):
            writer.request({"cmd": "prepare", "sessions": streams, "fresh": True}, 600)
            afters = pool.last_seqs(streams)
            command = {
                "cmd": "stream",
                "sessions": streams,
                "rate_hz": plan.aisdk_rate_hz,
                "duration": plan.window_s,
            }
            run_writer = functools.partial(writer.request, command, 600)
            got = asyncio.run(_follow_all(kind, http, ws, ctx.cookie, streams, afters, run_writer))
            written = sum(pool.last_seqs(streams)[s] - afters[s] for s in streams)
            delivered[kind] = {
                "written": written,
                "delivered": sum(got),
                "starved": sum(1 for g in got if g == 0),
                "per_second": round(sum(got) / plan.window_s, 1),
            }
            writer.request({"cmd": "finish"}, 600)
            ctx.log(f"  {len(streams)} {kind} streams: {delivered[kind]}")
    return {
        "deltas": plan.aisdk_resume_deltas,
        "resume": resumed,
        "streams": len(streams),
        "delivery": delivered,
    }


def goals(runs: list[dict[str, Any]]) -> list[Goal]:
    return []


def render(runs: list[dict[str, Any]], plan: Plan) -> str:
    load = (
        f"Load: resume of one answer of {plan.aisdk_resume_deltas:,} deltas still being written, "
        f"from its start, {plan.resume_repeats} times after a warm-up: `GET ai/chat/<id>/stream` "
        "(time to the last `text-delta`) beside the websocket (`after_seq` before the answer, "
        f"batched replay; time to the last `message.delta`). Then {plan.aisdk_streams:,} answers "
        f"written at {plan.aisdk_rate_hz:g} deltas/s each for {plan.window_s:g} s, followed by as "
        "many SSE answer streams, then by as many websockets. One Daphne process, PostgreSQL, "
        "Redis pub/sub; the clients run in one process."
    )
    rows = [
        "| run | resume SSE, median ms | resume websocket, median ms | streams "
        "| SSE delivered / written | websocket delivered / written |",
        "|---|---|---|---|---|---|",
    ]
    for index, run in enumerate(runs, start=1):
        r, d = run["resume"], run["delivery"]
        sse, wsd = d["sse"], d["ws"]
        rows.append(
            f"| {index} | {fmt(median(r['sse_ms']), 1)} | {fmt(median(r['ws_ms']), 1)} "
            f"| {run['streams']:,} | {sse['delivered']:,} / {sse['written']:,} "
            f"| {wsd['delivered']:,} / {wsd['written']:,} |"
        )
    return "\n".join([load, "", *rows])
