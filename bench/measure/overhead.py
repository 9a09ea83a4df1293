"""1. Streaming overhead: the durable path against a bare Channels relay.

The same load on both, in the same run: sessions of three devices, each streaming
session getting a stamped delta every 40 ms; one Daphne process on the Redis pub/sub
layer; the writer in a process of its own (``bench.writer`` through
``service.delta_writer`` for the durable path, ``bench.relay.publisher`` with a plain
``group_send`` for the relay). Both set-ups stay up side by side and are measured in turn
at each rate (:mod:`bench.interleave`), with the machine's load beside each step; the rate
is stepped up by streaming more sessions at once until both have failed a step (a gap, a
lost delta, the writer falling behind, or p99 > 100 ms), then each boundary is bisected.
"""

from __future__ import annotations

import math
from typing import Any

from bench import interleave, pool
from bench.clients import ClientPool, StepLoad, stream_step, warm_up
from bench.interleave import RigSpec
from bench.measure import Context, Goal
from bench.measure.common import durable_servers, durable_targets, fmt, relay_server, relay_targets
from bench.plan import DEVICES, RATE_HZ, Plan
from bench.procs import Child, Supervisor
from bench.writer import LONGEST_REPLY

NAME = "overhead"
TITLE = "Streaming overhead against a bare Channels relay"
WARM_UP_S = 2.0
# Durable sustainable rate over the bare relay's, in one run.
GOAL = 0.9


def _ramp(ctx: Context, step: Any, label: str) -> dict[str, Any]:
    """From the fixed-rate step, step the number of streams up (or down) until the
    verdict changes, then bisect. A step that fails is run once more and the better of
    the two counts: the machine is shared, and a burst of other work should not end a
    ramp. Returns every attempt."""
    plan = ctx.plan
    steps: list[dict[str, Any]] = []

    def attempt(streams: int) -> bool:
        for _ in range(2):
            result = step(streams)
            steps.append(result)
            ctx.log(_line(label, result))
            if result["sustained"]:
                return True
        return False

    good, bad = 0, None
    streams = plan.overhead_fixed_streams
    going_up = attempt(streams)
    while True:
        if going_up:
            good = streams
            streams = math.ceil(streams * plan.overhead_factor)
            if streams > plan.overhead_max_streams:
                break
            if not attempt(streams):
                bad = streams
                break
        else:
            bad = streams
            streams = math.floor(streams / plan.overhead_factor)
            if streams < 1:
                break
            if attempt(streams):
                good = streams
                break
    for _ in range(plan.overhead_bisect_steps if bad is not None else 0):
        middle = (good + bad) // 2
        if middle in (good, bad):
            break
        if attempt(middle):
            good = middle
        else:
            bad = middle
    best = max(
        (s for s in steps if s["sustained"]), key=lambda s: s["delivered_per_s"], default=None
    )
    return {
        "steps": steps,
        "sustainable_per_s": best["delivered_per_s"] if best else 0.0,
        "sustainable_streams": best["streams"] if best else 0,
        "capped": bad is None,
    }


def _line(label: str, r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    verdict = "ok" if r["sustained"] else "NOT sustained: " + "; ".join(r["why_not"])
    return (
        f"  {label}: {r['streams']} streams, {r['delivered_per_s']:.0f} deliveries/s, "
        f"p50 {lat['p50']} ms, p99 {lat['p99']} ms — {verdict}"
    )


def run_path(
    ctx: Context, path: str, *, label: str | None = None, extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Ramp one path (``durable`` or ``relay``) up to its sustainable rate; ``label``
    names its processes and log lines, ``extra_env`` is added to the durable path's."""
    plan = ctx.plan
    label = label or path
    sessions = pool.sessions(plan.overhead_max_streams)
    with Supervisor() as sup:
        writer: Child
        if path == "durable":
            servers, env = durable_servers(
                sup, f"overhead-{label}", layer="redis", processes=1, extra_env=extra_env
            )
            server = servers[0]
            writer = sup.module(f"overhead-{label}-writer", "bench.writer", env, profile=True)
            after = pool.last_seqs(sessions)
            targets = durable_targets(
                servers, sessions, after, first=0, count=len(sessions) * DEVICES
            )
        else:
            server, env = relay_server(sup, f"overhead-{path}")
            writer = sup.module("overhead-publisher", "bench.relay.publisher", env, profile=True)
            targets = relay_targets(server, sessions, len(sessions) * DEVICES)
        watch = {"server": server.pid, "writer": writer.pid}
        clients = ClientPool(sup, f"overhead-{label}", plan.client_processes, env)
        connected = clients.connect(targets, durable=path == "durable", cookie=ctx.cookie)
        if connected["failed"]:
            raise RuntimeError(f"{path}: {connected['failed']} connections failed: {connected}")
        if path == "durable":
            writer.request({"cmd": "prepare", "sessions": sessions, "fresh": False}, 600)
        warm_up(writer, sessions[: plan.overhead_fixed_streams], RATE_HZ, WARM_UP_S)

        def step(streams: int) -> dict[str, Any]:
            load = StepLoad(sessions[:streams], RATE_HZ, DEVICES, plan.warmup_s, plan.window_s)
            return stream_step(writer, clients, load, watch)

        ramp = _ramp(ctx, step, label)
        if path == "durable":
            writer.request({"cmd": "finish"}, 600)  # replies end; none is left streaming
        fixed = ramp["steps"][0]  # the first attempt at the fixed rate
        return {"connections": connected["connected"], "fixed": fixed, **ramp}


DECIDES_GOAL = True
SPECS: list[RigSpec] = [("durable", "durable", 1), ("relay", "relay", 1)]


def measure(ctx: Context) -> dict[str, Any]:
    """Both paths interleaved step by step; which one starts alternates between runs."""
    result: dict[str, Any] = interleave.measure_rigs(
        ctx,
        SPECS,
        ctx.plan.overhead_max_streams,
        order=lambda run: [0, 1] if run % 2 == 0 else [1, 0],
    )
    relay = result["relay"]["sustainable_per_s"]
    result["ratio"] = result["durable"]["sustainable_per_s"] / relay if relay else None
    return result


def goals(runs: list[dict[str, Any]]) -> list[Goal]:
    ratios = [r["ratio"] for r in runs]
    return [
        Goal(
            "Streaming overhead: durable sustainable rate ≥ 0.9 x bare relay "
            "(same layer, same process count, replies growing to 20,000 characters)",
            [
                f"{fmt(r, 2)} ({fmt(run['durable']['sustainable_per_s'])} vs "
                f"{fmt(run['relay']['sustainable_per_s'])}"
                f"{' capped' if run['relay'].get('capped') else ''})"
                for r, run in zip(ratios, runs, strict=True)
            ],
            [None if r is None else r >= GOAL for r in ratios],
            values=ratios,
            meets=lambda r: r >= GOAL,
        )
    ]


def _us(ms: float | None) -> str:
    return fmt(None if ms is None else ms * 1000.0)


def render(runs: list[dict[str, Any]], plan: Plan) -> str:
    rows = [
        "| run | path | sustainable deliveries/s | streams | fixed-rate p50 / p99 (ms) "
        "| fixed-rate deliveries/s | CPU µs per delivery: server / writer |",
        "|---|---|---|---|---|---|---|",
    ]
    for index, run in enumerate(runs, start=1):
        for path in ("durable", "relay"):
            r = run[path]
            fixed = r["fixed"]
            cpu = fixed.get("cpu_ms_per_delivery", {})
            cpu = {"server": cpu.get("server", cpu.get("server0")), "writer": cpu.get("writer")}
            capped = " (all steps passed)" if r["capped"] else ""
            rows.append(
                f"| {index} | {path} | {fmt(r['sustainable_per_s'])}{capped} "
                f"| {r['sustainable_streams']} "
                f"| {fmt(fixed['latency_ms']['p50'], 1)} / {fmt(fixed['latency_ms']['p99'], 1)} "
                f"| {fmt(fixed['delivered_per_s'])} "
                f"| {_us(cpu.get('server'))} / {_us(cpu.get('writer'))} |"
            )
        rows.append(f"| {index} | **ratio** | **{fmt(run['ratio'], 2)}** | | | | |")
    steps = ["", *interleave.steps_table(runs, ["durable", "relay"])]
    load = (
        f"Load: {plan.overhead_max_streams} sessions x {DEVICES} devices connected "
        f"({plan.overhead_max_streams * DEVICES} websockets, {plan.client_processes} client "
        f"processes); k of them streaming one delta every {1000 / RATE_HZ:.0f} ms, so "
        f"k x {RATE_HZ * DEVICES:.0f} deliveries/s. One Daphne process, RedisPubSubChannelLayer. "
        f"Replies grow through the steps up to {LONGEST_REPLY:,} characters (a delta does "
        "not rewrite its reply's text, so a long reply costs no more per delta). "
        "Both set-ups are up side by side and measured in turn at each rate (durable, relay, "
        "and again for a failed step), so a change of the machine's other work reaches both; "
        "the run alternates which goes first. "
        f"Steps start at the fixed rate, k = {plan.overhead_fixed_streams} "
        f"({plan.overhead_fixed_streams * RATE_HZ * DEVICES:.0f} deliveries/s, after an "
        f"unmeasured {WARM_UP_S:.0f} s stream at that rate), and grow "
        f"x{plan.overhead_factor} until both have failed (the relay's top step is never "
        f"the ceiling, up to {plan.overhead_max_streams} streams), then "
        f"{plan.overhead_bisect_steps} bisection steps at each boundary; a failed step is "
        "run twice and the better attempt counts. Each step: "
        f"{plan.warmup_s} s warm-up + {plan.window_s} s measured. CPU per"
        " delivery: the process's CPU time over the whole step divided by its deliveries;"
        " machine busy: all CPUs of the machine over the step (clients, PostgreSQL and Redis"
        " included, and whatever else the machine was running); others' CPU: the share of"
        " all CPUs used by processes that are neither the bench's nor PostgreSQL or Redis"
        " (other work on the machine); load avg: /proc/loadavg at the end of the step."
    )
    return "\n".join([load, "", *rows, *steps])
