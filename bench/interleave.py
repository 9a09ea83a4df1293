"""Several set-ups measured step by step in turn, so that background load hits them alike.

Measuring the durable path and then the relay lets a change of the machine's other work
land on one path only (the same command gave ratios of 0.54 and 1.23 on a busy machine).
Here every set-up (a *rig*: its servers, writer and connected clients) is started first
and stays up; then at each rate the rigs stream one after the other (durable, relay,
durable, relay: a failed step is tried once more, after the others), each step with the
machine's load beside it. The rate grows until the **last** rig fails, so no ratio is
capped by the top step, then each rig's boundary is bisected, again with every rig
measured at each bisection rate.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import pool
from bench.clients import ClientPool, StepLoad, stream_step, warm_up
from bench.machine import LoadProbe
from bench.measure import Context
from bench.measure.common import (
    durable_servers,
    durable_targets,
    fmt,
    relay_servers,
    relay_targets,
)
from bench.plan import DEVICES, RATE_HZ
from bench.procs import Child, Supervisor

WARM_UP_S = 2.0
_order = itertools.count(1)  # the steps of all rigs, in the order they ran


@dataclass
class Rig:
    """One set-up, started and connected, ready to stream steps."""

    label: str
    path: str  # "durable" or "relay"
    processes: int
    writer: Child
    clients: ClientPool
    sessions: list[str]
    watch: dict[str, int]
    connections: int
    steps: list[dict[str, Any]] = field(default_factory=list)

    def step(self, ctx: Context, streams: int) -> dict[str, Any]:
        plan = ctx.plan
        load = StepLoad(self.sessions[:streams], RATE_HZ, DEVICES, plan.warmup_s, plan.window_s)
        probe = LoadProbe()
        result = stream_step(self.writer, self.clients, load, self.watch)
        result["load"] = probe.finish()
        result["order"] = next(_order)
        self.steps.append(result)
        return result

    def finish(self) -> None:
        if self.path == "durable":
            self.writer.request({"cmd": "finish"}, 600)  # replies end; none left streaming


def start_rig(
    sup: Supervisor, ctx: Context, path: str, *, processes: int, label: str, sessions: list[str]
) -> Rig:
    """Start the servers and the writer of one set-up and connect its clients."""
    plan = ctx.plan
    if path == "durable":
        servers, env = durable_servers(sup, label, layer="redis", processes=processes)
        writer = sup.module(f"{label}-writer", "bench.writer", env, profile=True)
        after = pool.last_seqs(sessions)
        targets = durable_targets(servers, sessions, after, first=0, count=len(sessions) * DEVICES)
    else:
        servers, env = relay_servers(sup, label, processes)
        writer = sup.module(f"{label}-publisher", "bench.relay.publisher", env, profile=True)
        targets = relay_targets(servers, sessions, len(sessions) * DEVICES)
    watch = {f"server{i}": s.pid for i, s in enumerate(servers)} | {"writer": writer.pid}
    clients = ClientPool(sup, label, plan.client_processes, env)
    connected = clients.connect(targets, durable=path == "durable", cookie=ctx.cookie)
    if connected["failed"]:
        raise RuntimeError(f"{label}: {connected['failed']} connections failed: {connected}")
    if path == "durable":
        writer.request({"cmd": "prepare", "sessions": sessions, "fresh": False}, 600)
    warm_up(writer, sessions[: plan.overhead_fixed_streams], RATE_HZ, WARM_UP_S)
    return Rig(label, path, processes, writer, clients, sessions, watch, connected["connected"])


def _line(label: str, r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    verdict = "ok" if r["sustained"] else "NOT sustained: " + "; ".join(r["why_not"])
    load = r.get("load", {})
    return (
        f"  {label}: {r['streams']} streams, {r['delivered_per_s']:.0f} deliveries/s, "
        f"p50 {lat['p50']} ms, p99 {lat['p99']} ms, load {load.get('loadavg')}, others "
        f"{load.get('others_cpu_pct')} % CPU — {verdict}"
    )


def ramp(ctx: Context, rigs: list[Rig], max_streams: int) -> dict[str, dict[str, Any]]:
    """Step every rig in turn at each rate, up until every rig has failed (or
    ``max_streams``, the sessions connected, is reached), then bisect each boundary.

    Returns, per rig label: its steps, best sustained rate and streams, and whether it
    never failed (``capped``)."""
    plan = ctx.plan
    good = {rig.label: 0 for rig in rigs}
    bad: dict[str, int | None] = {rig.label: None for rig in rigs}
    tried: dict[tuple[str, int], bool] = {}

    def at(streams: int, wanted: list[Rig]) -> None:
        """Each wanted rig at ``streams``, interleaved; a failure is retried after the
        others had their turn, and the better attempt counts."""
        pending = [r for r in wanted if (r.label, streams) not in tried]
        for attempt in range(2):
            for rig in pending:
                if tried.get((rig.label, streams)):
                    continue
                result = rig.step(ctx, streams)
                ctx.log(_line(rig.label, result))
                tried[(rig.label, streams)] = result["sustained"]
            if attempt == 0 and all(tried[(r.label, streams)] for r in pending):
                break
        for rig in pending:
            if tried[(rig.label, streams)]:
                good[rig.label] = max(good[rig.label], streams)
            else:
                known_bad = bad[rig.label]
                bad[rig.label] = streams if known_bad is None else min(known_bad, streams)

    streams = plan.overhead_fixed_streams
    while True:
        at(streams, rigs)
        if all(bad[r.label] is not None for r in rigs) or streams >= max_streams:
            break
        streams = min(math.ceil(streams * plan.overhead_factor), max_streams)
    # A rig that failed at the first rate: step down until it passes.
    streams = plan.overhead_fixed_streams
    while any(good[r.label] == 0 for r in rigs) and streams > 1:
        streams = math.floor(streams / plan.overhead_factor)
        at(max(streams, 1), rigs)
    for _ in range(plan.overhead_bisect_steps):
        middles = set()
        for rig in rigs:
            low, high = good[rig.label], bad[rig.label]
            if high is not None and high - low > 1:
                middles.add((low + high) // 2)
        if not middles:
            break
        for middle in sorted(middles):
            at(middle, rigs)
    return {rig.label: summary(rig, bad[rig.label] is None) for rig in rigs}


def summary(rig: Rig, capped: bool) -> dict[str, Any]:
    best = max(
        (s for s in rig.steps if s["sustained"]), key=lambda s: s["delivered_per_s"], default=None
    )
    return {
        "processes": rig.processes,
        "connections": rig.connections,
        "steps": rig.steps,
        "fixed": rig.steps[0] if rig.steps else None,
        "sustainable_per_s": best["delivered_per_s"] if best else 0.0,
        "sustainable_streams": best["streams"] if best else 0,
        "capped": capped,
    }


RigSpec = tuple[str, str, int]  # label, path, processes


def measure_rigs(
    ctx: Context, specs: list[RigSpec], max_streams: int, *, order: Callable[[int], list[int]]
) -> dict[str, dict[str, Any]]:
    """Start every rig (in the order ``order(run)`` gives), ramp them together, stop.

    Rigs of the same path get sessions of their own: two durable rigs on one session
    would each receive the other's deltas (the relay's groups are apart from the
    sessions', so a durable and a relay rig may share)."""
    paths = [path for _, path, _ in specs]
    slices = max(paths.count("durable"), paths.count("relay"))
    everything = pool.sessions(max_streams * slices)
    with Supervisor() as sup:
        rigs = []
        for index in order(ctx.run):
            label, path, processes = specs[index]
            nth = paths[:index].count(path)
            sessions = everything[nth * max_streams : (nth + 1) * max_streams]
            ctx.log(f" starting {label}")
            rigs.append(
                start_rig(sup, ctx, path, processes=processes, label=label, sessions=sessions)
            )
        result = ramp(ctx, rigs, max_streams)
        for rig in rigs:
            rig.finish()
    return result


def _us(ms: float | None) -> str:
    return fmt(None if ms is None else ms * 1000.0)


def steps_table(runs: list[dict[str, Any]], labels: list[str]) -> list[str]:
    """Every step of every run in the order it ran, with the load beside it."""
    lines = [
        "Every step, in the order it ran (deliveries/s offered → delivered, latency, CPU, "
        "and the machine's load during the step):",
        "",
        "| run | # | set-up | streams | offered/s | delivered/s | p50 ms | p99 ms "
        "| CPU µs/delivery servers / writer | machine busy % | others' CPU % | load avg "
        "| sustained |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for index, run in enumerate(runs, start=1):
        steps = [(s, label) for label in labels for s in run[label]["steps"]]
        for s, label in sorted(steps, key=lambda pair: pair[0].get("order", 0)):
            why = "yes" if s["sustained"] else "no: " + "; ".join(s["why_not"])
            cpu = s.get("cpu_ms_per_delivery", {})
            servers = sum(v for k, v in cpu.items() if k.startswith("server") and v) or None
            load = s.get("load", {})
            lines.append(
                f"| {index} | {s.get('order', '-')} | {label} | {s['streams']} "
                f"| {fmt(s['offered_per_s'])} | {fmt(s['delivered_per_s'])} "
                f"| {fmt(s['latency_ms']['p50'], 1)} | {fmt(s['latency_ms']['p99'], 1)} "
                f"| {_us(servers)} / {_us(cpu.get('writer'))} "
                f"| {s.get('machine_busy_pct', '-')} | {load.get('others_cpu_pct', '-')} "
                f"| {load.get('loadavg', '-')} | {why} |"
            )
    return lines
