"""2. Latency under load: from a writer's flush to a client receiving it.

A fixed stream load (``latency_streams`` sessions, one delta every 40 ms, three devices
each: 900 deliveries/s) while 100, 300 and 1,000 clients are connected (sessions of three
devices; the extra sessions are idle). Set-ups: the in-memory layer on one process (the
writer inside the server, as an embedded agent run is) and Redis pub/sub on one and on
two processes (a writer process of its own; a session's devices alternate between the
processes).
"""

from __future__ import annotations

import math
from typing import Any

from bench import pool
from bench.clients import ClientPool, HttpWriter, StepLoad, Writer, stream_step, warm_up
from bench.measure import Context, Goal
from bench.measure.common import durable_servers, durable_targets, fmt
from bench.plan import DEVICES, RATE_HZ, Plan
from bench.procs import Supervisor

NAME = "latency"
TITLE = "Latency under load"
WARM_UP_S = 2.0


def _setup_name(layer: str, processes: int) -> str:
    return f"{layer}-{processes}p"


def _run_setup(ctx: Context, layer: str, processes: int) -> list[dict[str, Any]]:
    plan = ctx.plan
    most = max(plan.latency_clients)
    sessions = pool.sessions(math.ceil(most / DEVICES))
    streaming = sessions[: plan.latency_streams]
    label = _setup_name(layer, processes)
    with Supervisor() as sup:
        servers, env = durable_servers(sup, f"latency-{label}", layer=layer, processes=processes)
        writer: Writer
        watch = {f"server{i}": server.pid for i, server in enumerate(servers)}
        if layer == "memory":
            writer = HttpWriter(servers[0])
        else:
            writer = sup.module(f"latency-{label}-writer", "bench.writer", env, profile=True)
            watch["writer"] = writer.pid
        writer.request({"cmd": "prepare", "sessions": streaming, "fresh": False}, 300)
        after = pool.last_seqs(sessions)
        clients = ClientPool(sup, f"latency-{label}", plan.client_processes, env)
        points = []
        connected = 0
        for count in sorted(plan.latency_clients):
            targets = durable_targets(
                servers, sessions, after, first=connected, count=count - connected
            )
            opened = clients.connect(targets, durable=True, cookie=ctx.cookie)
            if opened["failed"]:
                raise RuntimeError(f"{label}: connections failed: {opened}")
            if not connected:
                warm_up(writer, streaming, RATE_HZ, WARM_UP_S)
            connected = count
            load = StepLoad(streaming, RATE_HZ, DEVICES, plan.warmup_s, plan.window_s)
            point = stream_step(writer, clients, load, watch)
            point["clients"] = count
            point["connect_s"] = round(opened["seconds"], 1)
            lat = point["latency_ms"]
            ctx.log(
                f"  {label}, {count} clients: {point['delivered_per_s']:.0f} deliveries/s, "
                f"p50 {lat['p50']} ms, p99 {lat['p99']} ms"
                + ("" if not point["why_not"] else " — " + "; ".join(point["why_not"]))
            )
            points.append(point)
        writer.request({"cmd": "finish"}, 600)  # replies end; none is left streaming
        return points


def measure(ctx: Context) -> dict[str, Any]:
    return {
        _setup_name(layer, processes): _run_setup(ctx, layer, processes)
        for layer, processes in ctx.plan.latency_setups
    }


def _at(run: dict[str, Any], setup: str, clients: int) -> dict[str, Any] | None:
    return next((p for p in run.get(setup, []) if p["clients"] == clients), None)


def goals(runs: list[dict[str, Any]]) -> list[Goal]:
    rows = []
    for setup in ("memory-1p", "redis-1p"):
        points = [_at(run, setup, 1000) for run in runs]
        if not any(points):
            continue
        rows.append(
            Goal(
                f"Latency p99 < 50 ms at 1,000 clients and 900 deliveries/s, one process "
                f"({setup.split('-')[0]} layer)",
                [
                    f"p99 {fmt(p['latency_ms']['p99'], 1)} ms at {fmt(p['delivered_per_s'])}/s"
                    if p
                    else "-"
                    for p in points
                ],
                [
                    None
                    if p is None or p["latency_ms"]["p99"] is None
                    else p["latency_ms"]["p99"] < 50 and p["delivered_per_s"] >= 0.95 * 900
                    for p in points
                ],
            )
        )
    return rows


def render(runs: list[dict[str, Any]], plan: Plan) -> str:
    rate = plan.latency_streams * RATE_HZ * DEVICES
    load = (
        f"Load: {plan.latency_streams} sessions streaming one delta every "
        f"{1000 / RATE_HZ:.0f} ms to {DEVICES} devices each ({rate:.0f} deliveries/s); "
        f"the other connections belong to idle sessions (3 devices each). Clients connect "
        f"in steps ({', '.join(str(c) for c in plan.latency_clients)}) and stay connected; "
        f"at each step {plan.warmup_s} s warm-up + {plan.window_s} s measured, "
        f"{plan.client_processes} client processes. In-memory: the writer runs inside the "
        "Daphne process (bench/inproc.py); Redis: `bench.writer` in its own process. The "
        "notes say where a step would not count as sustained (p99 > 100 ms and so on)."
    )
    rows = [
        "| run | set-up | clients | deliveries/s | p50 ms | p95 ms | p99 ms | max ms "
        "| server CPU µs/delivery (memory: writer included) | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for index, run in enumerate(runs, start=1):
        for setup, points in run.items():
            for p in points:
                lat = p["latency_ms"]
                note = "; ".join(p["why_not"]) if p["why_not"] else ""
                cpu = p.get("cpu_ms_per_delivery", {})
                server_ms = sum(v for k, v in cpu.items() if k.startswith("server") and v)
                rows.append(
                    f"| {index} | {setup} | {p['clients']:,} | {fmt(p['delivered_per_s'])} "
                    f"| {fmt(lat['p50'], 1)} | {fmt(lat['p95'], 1)} | {fmt(lat['p99'], 1)} "
                    f"| {fmt(lat['max'], 1)} | {fmt(server_ms * 1000.0)} | {note} |"
                )
    return "\n".join([load, "", *rows])
