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
RELAY_CONNECTIONS = 2000  # idle connections to the bare relay, for comparison
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


def measure(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    most = max(plan.connection_steps)
    sessions = pool.sessions(math.ceil(most / DEVICES))
    processes = max(plan.client_processes, math.ceil(most / 2500))
    steps: list[dict[str, Any]] = []
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
        connected = 0
        for count in sorted(plan.connection_steps):
            opened = clients.connect(
                durable_targets(servers, sessions, after, first=connected, count=count - connected),
                durable=True,
                cookie=ctx.cookie,
            )
            connected = opened["total"]
            rss, idle_cpu = _settle(server.pid)
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
            active = sessions[: math.ceil(count / DEVICES)]
            seconds = max(2.0, len(active) / plan.broadcast_rate)
            clients.reset()
            wrote = writer.request(
                {"cmd": "spread", "sessions": active, "seconds": seconds}, 120 + seconds
            )
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
            ctx.log(
                f"  {count} connections ({opened['seconds']:.0f} s to open): "
                f"{step['per_connection_kib']} KiB each, broadcast p95 {p95} ms, "
                f"{step['received']} received — {'held' if step['held'] else 'NOT held'}"
            )
            steps.append(step)
            if not step["held"]:
                break
        writer.request({"cmd": "finish"}, 900)  # replies end; none is left streaming
    relay = _relay_memory(ctx, sessions, min(RELAY_CONNECTIONS, most))
    ctx.log(
        f"  bare relay, {relay['connections']} connections: {relay['per_connection_kib']} KiB each"
    )
    return {
        "baseline_rss_kib": baseline,
        "baseline_cpu_pct": baseline_cpu,
        "steps": steps,
        "relay": relay,
    }


def _relay_memory(ctx: Context, sessions: list[str], count: int) -> dict[str, Any]:
    """The same idle connections to the bare relay: what Daphne and Channels cost alone."""
    with Supervisor() as sup:
        server, env = relay_server(sup, "connections-relay")
        warm = ClientPool(sup, "connections-relay-warmup", 1, env)
        warm.connect(relay_targets(server, sessions, DEVICES), durable=False)
        warm.close()
        baseline, _ = _settle(server.pid)
        clients = ClientPool(sup, "connections-relay", ctx.plan.client_processes, env)
        opened = clients.connect(relay_targets(server, sessions, count), durable=False)
        rss, idle_cpu = _settle(server.pid)
    return {
        "connections": opened["total"],
        "baseline_rss_kib": baseline,
        "rss_kib": rss,
        "per_connection_kib": round((rss - baseline) / max(opened["total"], 1), 1),
        "idle_cpu_pct": idle_cpu,
    }


def _best(run: dict[str, Any]) -> int:
    return max((s["connections"] for s in run["steps"] if s["held"]), default=0)


def _memory(run: dict[str, Any]) -> float | None:
    held = [s for s in run["steps"] if s["connected"]]
    return held[-1]["per_connection_kib"] if held else None


def goals(runs: list[dict[str, Any]]) -> list[Goal]:
    memory = [_memory(r) for r in runs]
    best = [_best(r) for r in runs]
    relay = [r.get("relay", {}).get("per_connection_kib") for r in runs]
    versus = [m / k if m is not None and k else None for m, k in zip(memory, relay, strict=True)]
    return [
        Goal(
            "Memory ≤ 40 KB per idle connection",
            [
                f"{fmt(m, 1)} KiB (at {r['steps'][-1]['connected']:,}; bare relay "
                f"{fmt(r.get('relay', {}).get('per_connection_kib'), 1)})"
                for m, r in zip(memory, runs, strict=True)
            ],
            [None if m is None else m * 1.024 <= 40 for m in memory],
        ),
        Goal(
            f"Memory per idle connection ≤ {MEMORY_VS_RELAY} x the bare relay's",
            [
                f"{fmt(x, 2)} ({fmt(m, 1)} vs "
                f"{fmt(r.get('relay', {}).get('per_connection_kib'), 1)} KiB)"
                for x, m, r in zip(versus, memory, runs, strict=True)
            ],
            [None if x is None else x <= MEMORY_VS_RELAY for x in versus],
            values=versus,
            meets=lambda x: x <= MEMORY_VS_RELAY,
        ),
        Goal(
            "≥ 5,000 connections per process (broadcast p95 < 250 ms), in every run",
            [
                f"{b:,} held (most tried: {max(s['connections'] for s in r['steps']):,})"
                for b, r in zip(best, runs, strict=True)
            ],
            [b >= 5000 for b in best],
        ),
    ]


def render(runs: list[dict[str, Any]], plan: Plan) -> str:
    load = (
        f"Load: connections opened in steps of {', '.join(f'{c:,}' for c in plan.connection_steps)}"
        f" ({DEVICES} per session), one Daphne process (Redis pub/sub, PostgreSQL), open-files "
        f"limit 65,536. RSS read from /proc/<pid>/status after {IDLE_S + 1:.0f} s idle; baseline "
        "after a warm-up connection; idle CPU: the server's CPU time over the last "
        f"{IDLE_S:.0f} idle seconds (100 % = one core). Broadcast: one delta to every "
        f"session, spread at {plan.broadcast_rate:.0f} sessions/s (at least 2 s), so each "
        "connection receives one."
    )
    rows = [
        "| run | connections | open time s | RSS MiB | KiB per connection | idle CPU % "
        "| broadcast p50 / p95 / p99 ms | received | held |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for index, run in enumerate(runs, start=1):
        rows.append(
            f"| {index} | 0 (baseline) | | {run['baseline_rss_kib'] / 1024:.1f} | "
            f"| {run.get('baseline_cpu_pct', '')} | | | |"
        )
        for s in run["steps"]:
            lat = s["latency_ms"]
            held = "yes" if s["held"] else f"no ({s['failed']} failed, {s['ended']} closed)"
            rows.append(
                f"| {index} | {s['connected']:,} | {s['connect_s']} | {s['rss_kib'] / 1024:.1f} "
                f"| {fmt(s['per_connection_kib'], 1)} | {s.get('idle_cpu_pct', '')} "
                f"| {fmt(lat['p50'], 1)} / {fmt(lat['p95'], 1)} / {fmt(lat['p99'], 1)} "
                f"| {s['received']:,} | {held} |"
            )
    relay_rows = [
        "",
        "The same idle connections to the bare relay (`bench/relay/`, no app code), "
        "measured the same way in the same run:",
        "",
        "| run | connections | RSS MiB | KiB per connection | idle CPU % |",
        "|---|---|---|---|---|",
    ]
    for index, run in enumerate(runs, start=1):
        relay = run.get("relay")
        if relay:
            relay_rows.append(
                f"| {index} | {relay['connections']:,} | {relay['rss_kib'] / 1024:.1f} "
                f"| {fmt(relay['per_connection_kib'], 1)} | {relay['idle_cpu_pct']} |"
            )
    return "\n".join([load, "", *rows, *relay_rows])
