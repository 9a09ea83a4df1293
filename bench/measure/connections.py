"""4. Connections: memory per idle connection, and how many one process holds.

One Daphne process on PostgreSQL and Redis pub/sub, its open-files limit raised.
Connections (three per session) are opened in steps; at each step, once they have been
idle for a few seconds, the process's RSS (VmRSS) is read, then every session gets one
delta (``bench.writer``, spread evenly at ``broadcast_rate`` sessions per second), so
every connection receives exactly one, and the p95 from flush to receipt is measured.
The steps stop at the first that fails (a failed connection, a lost delta, p95 >= 250 ms).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from bench import pool
from bench.clients import ClientPool, missing_sessions
from bench.measure import Context, Goal
from bench.measure.common import (
    durable_servers,
    durable_targets,
    fmt,
    relay_server,
    relay_targets,
)
from bench.plan import DEVICES, Plan
from bench.procs import Supervisor, cpu_seconds, rss_kb
from bench.stats import latency_summary

NAME = "connections"
TITLE = "Connections per process"
IDLE_S = 3.0
P95_LIMIT_MS = 250.0
DECIDES_GOAL = True
MEMORY_VS_RELAY = 1.1  # KiB per idle connection, durable over bare relay


def _settle(pid: int) -> tuple[int, float]:
    """RSS once the connections have been idle for a while, and the share of one CPU
    the process used meanwhile (presence heartbeats, resync checks)."""
    time.sleep(1.0)
    before = cpu_seconds(pid)
    time.sleep(IDLE_S)
    return rss_kb(pid), round(100.0 * (cpu_seconds(pid) - before) / IDLE_S, 1)


def _step(
    count: int,
    opened: dict[str, Any],
    pid: int,
    baseline: int,
    clients: ClientPool,
    writer: Any,
    keys: list[str],
    rate: float,
) -> dict[str, Any]:
    """One step, once its connections are open: RSS and idle CPU, then one delta to each
    of ``keys`` spread at ``rate`` per second, and its latency."""
    connected = opened["total"]
    rss, idle_cpu = _settle(pid)
    step: dict[str, Any] = {
        "connections": count,
        "connected": connected,
        "failed": opened["failed"],
        "errors": opened["errors"],
        "connect_s": round(opened["seconds"], 1),
        "rss_kib": rss,
        "per_connection_kib": round((rss - baseline) / max(connected, 1), 1),
        "idle_cpu_pct": idle_cpu,
    }
    seconds = max(2.0, len(keys) / rate)
    clients.reset()
    wrote = writer.request({"cmd": "spread", "sessions": keys, "seconds": seconds}, 120 + seconds)
    time.sleep(2.0)
    seen = clients.report(wrote["start"], wrote["end"] + 60)
    step["broadcast_s"] = round(seconds, 1)
    step["latency_ms"] = latency_summary(seen["latencies_ms"])
    step["received"] = step["latency_ms"]["n"]
    step["missing_sessions"] = missing_sessions(wrote, seen)
    step["ended"] = seen["ended"]
    p95 = step["latency_ms"]["p95"]
    step["held"] = (
        not opened["failed"]
        and not seen["ended"]
        and not step["missing_sessions"]
        and p95 is not None
        and p95 < P95_LIMIT_MS
    )
    return step


def _steps(
    ctx: Context,
    path: str,
    connect: Callable[[int, int], dict[str, Any]],
    pid: int,
    baseline: int,
    clients: ClientPool,
    sender: Any,
    sessions: list[str],
) -> list[dict[str, Any]]:
    """The plan's connection steps on one server, up to the first it does not hold:
    ``connect(connected, count)`` opens connections ``connected`` to ``count - 1``."""
    steps: list[dict[str, Any]] = []
    connected = 0
    for count in sorted(ctx.plan.connection_steps):
        opened = connect(connected, count)
        connected = opened["total"]
        active = sessions[: math.ceil(count / DEVICES)]
        step = _step(count, opened, pid, baseline, clients, sender, active, ctx.plan.broadcast_rate)
        _log(ctx, path, step)
        steps.append(step)
        if not step["held"]:
            break
    return steps


def _log(ctx: Context, path: str, step: dict[str, Any]) -> None:
    ctx.log(
        f"  {path}, {step['connections']} connections ({step['connect_s']:.0f} s to open): "
        f"{step['per_connection_kib']} KiB each, broadcast p95 {step['latency_ms']['p95']} ms, "
        f"{step['received']} received — {'held' if step['held'] else 'NOT held'}"
    )


def measure(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    most = max(plan.connection_steps)
    sessions = pool.sessions(math.ceil(most / DEVICES))
    processes = max(plan.client_processes, math.ceil(most / 2500))
    with Supervisor() as sup:
        servers, env = durable_servers(sup, "connections", layer="redis", processes=1)
        server = servers[0]
        writer = sup.module("connections-writer", "bench.writer", env, profile=True)
        writer.request({"cmd": "prepare", "sessions": sessions, "fresh": False}, 600)
        after = pool.last_seqs(sessions)
        clients = ClientPool(sup, "connections", processes, env)
        # Warm up imports and the database pool with a few connections, then measure.
        warm = ClientPool(sup, "connections-warmup", 1, env)
        warm.connect(
            durable_targets(servers, sessions, after, first=0, count=DEVICES),
            durable=True,
            cookie=ctx.cookie,
        )
        warm.close()
        baseline, baseline_cpu = _settle(server.pid)

        def connect(connected: int, count: int) -> dict[str, Any]:
            targets = durable_targets(
                servers, sessions, after, first=connected, count=count - connected
            )
            return clients.connect(targets, durable=True, cookie=ctx.cookie)

        steps = _steps(ctx, "durable", connect, server.pid, baseline, clients, writer, sessions)
        writer.request({"cmd": "finish"}, 900)  # replies end; none is left streaming
    relay = _relay(ctx, sessions, processes)
    return {
        "baseline_rss_kib": baseline,
        "baseline_cpu_pct": baseline_cpu,
        "steps": steps,
        "relay": relay,
    }


def _relay(ctx: Context, sessions: list[str], processes: int) -> dict[str, Any]:
    """The same steps against the bare relay (Daphne and Channels alone, its publisher a
    plain ``group_send``): its memory and broadcast latency beside the durable path's, up
    to the first step it does not hold either."""
    with Supervisor() as sup:
        server, env = relay_server(sup, "connections-relay")
        publisher = sup.module("connections-relay-publisher", "bench.relay.publisher", env)
        warm = ClientPool(sup, "connections-relay-warmup", 1, env)
        warm.connect(relay_targets(server, sessions, DEVICES), durable=False)
        warm.close()
        baseline, baseline_cpu = _settle(server.pid)
        clients = ClientPool(sup, "connections-relay", processes, env)

        def connect(connected: int, count: int) -> dict[str, Any]:
            targets = relay_targets(server, sessions, count)[connected:]
            return clients.connect(targets, durable=False)

        steps = _steps(
            ctx, "bare relay", connect, server.pid, baseline, clients, publisher, sessions
        )
    last = steps[-1]
    return {
        "connections": last["connected"],
        "baseline_rss_kib": baseline,
        "baseline_cpu_pct": baseline_cpu,
        "rss_kib": last["rss_kib"],
        "per_connection_kib": last["per_connection_kib"],
        "idle_cpu_pct": last["idle_cpu_pct"],
        "steps": steps,
    }


def _best(run: dict[str, Any]) -> int:
    return max((s["connections"] for s in run["steps"] if s["held"]), default=0)


def _relay_memory(run: dict[str, Any]) -> float | None:
    """The relay's memory per connection at the durable path's last step (the same
    number of connections), else at its own last."""
    relay = run.get("relay", {})
    held = [s for s in run["steps"] if s["connected"]]
    for step in relay.get("steps", []):
        if held and step["connections"] == held[-1]["connections"]:
            return step["per_connection_kib"]
    return relay.get("per_connection_kib")


def _relay_best(run: dict[str, Any]) -> int | None:
    """The most connections the bare relay held (None: not measured in steps)."""
    relay = run.get("relay", {})
    return _best(relay) if "steps" in relay else None


def _memory(run: dict[str, Any]) -> float | None:
    held = [s for s in run["steps"] if s["connected"]]
    return held[-1]["per_connection_kib"] if held else None


def goals(runs: list[dict[str, Any]]) -> list[Goal]:
    memory = [_memory(r) for r in runs]
    best = [_best(r) for r in runs]
    relay = [_relay_memory(r) for r in runs]
    relay_best = [_relay_best(r) for r in runs]
    versus = [m / k if m is not None and k else None for m, k in zip(memory, relay, strict=True)]
    return [
        Goal(
            "Memory ≤ 40 KB per idle connection",
            [
                f"{fmt(m, 1)} KiB (at {r['steps'][-1]['connected']:,}; bare relay {fmt(k, 1)})"
                for m, k, r in zip(memory, relay, runs, strict=True)
            ],
            [None if m is None else m * 1.024 <= 40 for m in memory],
        ),
        Goal(
            f"Memory per idle connection ≤ {MEMORY_VS_RELAY} x the bare relay's",
            [
                f"{fmt(x, 2)} ({fmt(m, 1)} vs {fmt(k, 1)} KiB)"
                for x, m, k in zip(versus, memory, relay, strict=True)
            ],
            [None if x is None else x <= MEMORY_VS_RELAY for x in versus],
            values=versus,
            meets=lambda x: x <= MEMORY_VS_RELAY,
        ),
        Goal(
            "≥ 5,000 connections per process and as many as the bare relay holds "
            "(broadcast p95 < 250 ms), in every run",
            [
                f"{b:,} held (most tried: {max(s['connections'] for s in r['steps']):,}; "
                f"bare relay: {'-' if k is None else f'{k:,}'})"
                for b, k, r in zip(best, relay_best, runs, strict=True)
            ],
            [b >= 5000 and (k is None or b >= k) for b, k in zip(best, relay_best, strict=True)],
        ),
    ]


def _row(index: int, path: str, s: dict[str, Any]) -> str:
    lat = s["latency_ms"]
    held = "yes" if s["held"] else f"no ({s['failed']} failed, {s['ended']} closed)"
    return (
        f"| {index} | {s['connected']:,} | {path} | {s['connect_s']} | {s['rss_kib'] / 1024:.1f} "
        f"| {fmt(s['per_connection_kib'], 1)} | {s.get('idle_cpu_pct', '')} "
        f"| {fmt(lat['p50'], 1)} / {fmt(lat['p95'], 1)} / {fmt(lat['p99'], 1)} "
        f"| {s['received']:,} | {held} |"
    )


def render(runs: list[dict[str, Any]], plan: Plan) -> str:
    load = (
        f"Load: connections opened in steps of {', '.join(f'{c:,}' for c in plan.connection_steps)}"
        f" ({DEVICES} per session), one Daphne process (Redis pub/sub, PostgreSQL), open-files "
        f"limit 65,536. RSS read from /proc/<pid>/status after {IDLE_S + 1:.0f} s idle; baseline "
        "after a warm-up connection; idle CPU: the server's CPU time over the last "
        f"{IDLE_S:.0f} idle seconds (100 % = one core). Broadcast: one delta to every "
        f"session, spread at {plan.broadcast_rate:.0f} sessions/s (at least 2 s), so each "
        "connection receives one. The bare relay (`bench/relay/`: Daphne and Channels, no app "
        "code; its publisher a plain `group_send`) gets the same steps, connections and "
        "broadcast in the same run, after the durable path."
    )
    rows = [
        "| run | connections | path | open time s | RSS MiB | KiB per connection | idle CPU % "
        "| broadcast p50 / p95 / p99 ms | received | held |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for index, run in enumerate(runs, start=1):
        relay = run.get("relay") or {}
        relay_steps = {s["connections"]: s for s in relay.get("steps", [])}
        rows.append(
            f"| {index} | 0 (baseline) | durable | | {run['baseline_rss_kib'] / 1024:.1f} | "
            f"| {run.get('baseline_cpu_pct', '')} | | | |"
        )
        if relay_steps:
            rows.append(
                f"| {index} | 0 (baseline) | bare relay | | {relay['baseline_rss_kib'] / 1024:.1f} "
                f"| | {relay.get('baseline_cpu_pct', '')} | | | |"
            )
        counts = sorted({s["connections"] for s in run["steps"]} | set(relay_steps))
        durable = {s["connections"]: s for s in run["steps"]}
        for count in counts:
            if count in durable:
                rows.append(_row(index, "durable", durable[count]))
            if count in relay_steps:
                rows.append(_row(index, "bare relay", relay_steps[count]))
        if relay and not relay_steps:  # an older run: the relay's memory at one count
            rows.append(
                f"| {index} | {relay['connections']:,} | bare relay | "
                f"| {relay['rss_kib'] / 1024:.1f} | {fmt(relay['per_connection_kib'], 1)} "
                f"| {relay['idle_cpu_pct']} | | | |"
            )
    return "\n".join([load, "", *rows])
