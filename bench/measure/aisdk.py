"""10. The AI SDK endpoints (docs/aisdk.md) beside the websocket.

Resume: one answer of ``aisdk_resume_deltas`` deltas, still streaming, is resumed from its
start by ``GET ai/chat/<id>/stream`` (counting ``text-delta`` chunks) and by a websocket
with ``after_seq`` just before the answer (counting ``message.delta`` events, replay
batched as client.js asks); time from the request to the last delta.

Concurrent streams: ``aisdk_streams`` sessions each with an answer being written at
``aisdk_rate_hz`` deltas per second by the writer process (group commit, Redis wake-ups),
followed first by as many SSE answer streams, then by as many websockets, one per
session, spread over ``aisdk_client_processes`` load-generator processes
(:mod:`bench.loadgen`). Every stream is open and caught up before an unmeasured warm-up
and the measured stream; then, per path: deltas delivered against written, per second,
streams that got none, latency from the writer's stamp to receipt, the server's CPU time
per delivered delta and its RSS with every stream open.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import websockets

from bench import pool
from bench.clients import DRAIN_S, ClientPool, warm_up
from bench.measure import Context, Goal
from bench.measure.common import durable_servers, fmt
from bench.plan import Plan
from bench.procs import (
    Child,
    Profiling,
    Server,
    Supervisor,
    cpu_seconds,
    machine_ticks,
    rss_kb,
)
from bench.stats import latency_summary, median

NAME = "aisdk"
# After the stream, the clients get up to this long to receive every delta written: a
# late delta shows in the latency rather than as a lost one.
DRAIN_MAX_S = 15.0
SETTLE_MAX_S = 60.0
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


def _targets(
    kind: str, http: str, ws: str, sessions: list[str], afters: dict[str, int]
) -> list[tuple[str, str]]:
    if kind == "sse":
        return [(f"{http}/ds/ai/chat/{s}/stream", s) for s in sessions]
    return [(f"{ws}/ws/sessions/{s}/?batch=1&after_seq={afters[s]}", s) for s in sessions]


def _settle(server: Server) -> float:
    """Wait until the server is nearly idle (the previous path's connections closed and
    cleaned up: a thousand websockets leaving keep it busy for seconds), at most
    :data:`SETTLE_MAX_S`; the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_MAX_S:
        before = cpu_seconds(server.pid)
        time.sleep(1.0)
        if cpu_seconds(server.pid) - before < 0.1:
            break
    return time.monotonic() - started


def _drain(clients: ClientPool, wrote: dict[str, Any]) -> float:
    """Wait until the clients hold every delta written (at most :data:`DRAIN_MAX_S`);
    the seconds waited."""
    started = time.monotonic()
    time.sleep(DRAIN_S)
    while time.monotonic() - started < DRAIN_MAX_S:
        got = len(clients.report(wrote["start"], time.time())["latencies_ms"])
        if got >= wrote["written"]:
            break
        time.sleep(0.5)
    return time.monotonic() - started


def _follow(
    sup: Supervisor,
    kind: str,
    ctx: Context,
    server: Server,
    writer: Child,
    env: dict[str, str],
    sessions: list[str],
) -> dict[str, Any]:
    """One answer per session streamed at ``aisdk_rate_hz`` to one ``kind`` client each
    (``sse``: the AI SDK answer stream; ``ws``: a websocket), every client caught up
    before the stream; what they received of it, and what it cost the server."""
    plan = ctx.plan
    settled = _settle(server)
    writer.request({"cmd": "prepare", "sessions": sessions, "fresh": True}, 600)
    afters = pool.last_seqs(sessions)
    clients = ClientPool(sup, f"aisdk-{kind}", plan.aisdk_client_processes, env)
    try:
        opened = clients.connect(
            _targets(kind, server.origin, server.ws, sessions, afters),
            durable=True,
            cookie=ctx.cookie,
            sse=kind == "sse",
        )
        if opened["failed"]:
            ctx.log(f"  {kind}: {opened['failed']} streams did not open: {opened['errors'][:2]}")
        warm_up(writer, sessions, plan.aisdk_rate_hz, plan.warmup_s)
        clients.reset()
        command = {
            "cmd": "stream",
            "sessions": sessions,
            "rate_hz": plan.aisdk_rate_hz,
            "duration": plan.window_s,
        }
        # With --profile, a profile of the server over this path's stream alone too.
        profiler = Profiling.start(f"aisdk-daphne-{kind}-stream", server.pid)
        if profiler is not None:
            time.sleep(2.0)  # py-spy takes a while to attach on a busy machine
        rss_before = rss_kb(server.pid)
        cpu_before = cpu_seconds(server.pid)
        others = {"writer": [writer.pid], "clients": [c.pid for c in clients.children]}
        others_before = {k: sum(map(cpu_seconds, pids)) for k, pids in others.items()}
        busy_before, total_before = machine_ticks()
        try:
            wrote = writer.request(command, 120 + plan.window_s)
            drained = _drain(clients, wrote)
        finally:
            Profiling.stop(profiler)
        cpu = cpu_seconds(server.pid) - cpu_before
        busy, total = machine_ticks()
        others_cpu = {
            k: sum(map(cpu_seconds, pids)) - others_before[k] for k, pids in others.items()
        }
        rss = rss_kb(server.pid)
        # Every stamp from the start on (the last deltas are stamped just after "end").
        seen = clients.report(wrote["start"], time.time(), per_key=True)
    finally:
        clients.close()
    writer.request({"cmd": "finish"}, 600)
    delivered = len(seen["latencies_ms"])
    latency = latency_summary(seen["latencies_ms"])
    return {
        "opened": opened["connected"],
        "open_s": round(opened["seconds"], 1),
        "settle_s": round(settled, 1),
        "target": round(wrote["target"]),
        "written": wrote["written"],
        "writer_errors": wrote["errors"][:2],
        "delivered": delivered,
        "per_second": round(delivered / (wrote["end"] - wrote["start"]), 1),
        "starved": sum(1 for s in sessions if not seen["per_key"].get(s)),
        "duplicates": seen["duplicates"],
        "gaps": seen["gaps"],
        "latency_ms": latency,
        "drain_s": round(drained, 1),
        # Every CPU of the machine (servers, writer, clients, PostgreSQL, Redis, others'):
        # latencies of seconds on a busy machine say more about it than about the path.
        "machine_busy_pct": round(100.0 * (busy - busy_before) / max(total - total_before, 1)),
        "server_cpu_ms_per_delta": round(1000.0 * cpu / delivered, 3) if delivered else None,
        "server_rss_mib": round(rss / 1024, 1),
        # Whether the writer or the clients, rather than the server, set the pace.
        **{
            f"{k}_cpu_ms_per_delta": round(1000.0 * v / delivered, 3) if delivered else None
            for k, v in others_cpu.items()
        },
        "server_rss_before_mib": round(rss_before / 1024, 1),
    }


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
        # The path measured first meets a colder server and database: runs alternate.
        order = ("sse", "ws") if ctx.run % 2 == 0 else ("ws", "sse")
        for kind in order:
            delivered[kind] = _follow(sup, kind, ctx, servers[0], writer, env, streams)
            ctx.log(f"  {len(streams)} {kind} streams: {delivered[kind]}")
    return {
        "deltas": plan.aisdk_resume_deltas,
        "resume": resumed,
        "streams": len(streams),
        "delivery": delivered,
        "order": list(order),
    }


def goals(runs: list[dict[str, Any]]) -> list[Goal]:
    return []


# Rows of the streams table: label, how to get the figure from one path's results, digits.
_ROWS: tuple[tuple[str, Any, int], ...] = (
    ("streams open and caught up", lambda d: d["opened"], 0),
    ("deltas written", lambda d: d["written"], 0),
    ("deltas delivered", lambda d: d["delivered"], 0),
    ("delivered / written, %", lambda d: 100.0 * d["delivered"] / max(d["written"], 1), 1),
    ("delivered per second", lambda d: d["per_second"], 0),
    ("streams starved (no delta delivered)", lambda d: d["starved"], 0),
    ("latency p50, ms", lambda d: d["latency_ms"]["p50"], 1),
    ("latency p99, ms", lambda d: d["latency_ms"]["p99"], 1),
    ("server CPU per delivered delta, ms", lambda d: d["server_cpu_ms_per_delta"], 3),
    ("server RSS with every stream open, MiB", lambda d: d["server_rss_mib"], 0),
    (
        "client processes' CPU per delivered delta, ms",
        lambda d: d.get("clients_cpu_ms_per_delta"),
        3,
    ),
    ("writer's CPU per delivered delta, ms", lambda d: d.get("writer_cpu_ms_per_delta"), 3),
    ("duplicates or gaps seen", lambda d: d["duplicates"] + d["gaps"], 0),
    ("machine busy during the stream, %", lambda d: d.get("machine_busy_pct"), 0),
)


def _ratio(sse: float | None, ws: float | None) -> str:
    if sse is None or ws is None or ws == 0:
        return "-"
    return f"{sse / ws:,.2f}"


def _streams_table(runs: list[dict[str, Any]]) -> list[str]:
    """Each figure of both paths (the median of the runs) side by side, with their ratio."""
    rows = [
        "| at the same load | SSE answer streams | websockets | SSE ÷ websocket |",
        "|---|---|---|---|",
    ]
    for label, figure, digits in _ROWS:
        cells = []
        for kind in ("sse", "ws"):
            values = [figure(r["delivery"][kind]) for r in runs]
            cells.append(median([v for v in values if v is not None]))
        sse, ws = cells
        rows.append(f"| {label} | {fmt(sse, digits)} | {fmt(ws, digits)} | {_ratio(sse, ws)} |")
    return rows


def render(runs: list[dict[str, Any]], plan: Plan) -> str:
    resume = (
        f"Resume: one answer of {plan.aisdk_resume_deltas:,} deltas still being written, "
        f"resumed from its start, {plan.resume_repeats} times after a warm-up: "
        "`GET ai/chat/<id>/stream` (time to the last `text-delta`) beside the websocket "
        "(`after_seq` before the answer, batched replay; time to the last `message.delta`). "
        "One Daphne process, PostgreSQL, Redis pub/sub."
    )
    rows = [
        "| run | resume SSE, median ms | resume websocket, median ms |",
        "|---|---|---|",
    ]
    for index, run in enumerate(runs, start=1):
        r = run["resume"]
        rows.append(f"| {index} | {fmt(median(r['sse_ms']), 1)} | {fmt(median(r['ws_ms']), 1)} |")
    streaming = [r for r in runs if "latency_ms" in r["delivery"]["sse"]]  # older runs: none
    load = (
        f"SSE streaming overhead at {plan.aisdk_streams:,} concurrent streams against the "
        f"websocket path: {plan.aisdk_streams:,} answers, each written at "
        f"{plan.aisdk_rate_hz:g} deltas/s by the writer process (group commit, Redis wake-ups) "
        f"for {plan.window_s:g} s after a {plan.warmup_s:g} s warm-up, followed by one "
        "`GET ai/chat/<id>/stream` each and, the same answers started again, by one "
        "websocket each (odd runs first the websockets); the clients spread over "
        f"{plan.aisdk_client_processes} processes, "
        "every stream open and caught up before the writer starts, and the server idle "
        "before each path. Latency: from the "
        "writer's stamp at the start of a delta's text to its receipt; the clients get up to "
        f"{DRAIN_MAX_S:g} s after the stream to receive every delta written, and one not "
        "received by then is not delivered. CPU: the Daphne process's, "
        f"over the stream and the drain. Median of {len(streaming)} run(s)."
    )
    table = _streams_table(streaming) if streaming else ["No run measured the streams."]
    return "\n".join([resume, "", *rows, "", load, "", *table])
