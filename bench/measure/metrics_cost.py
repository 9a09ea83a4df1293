"""6. The cost of metrics: the durable path with Prometheus metrics on and off.

Two measures. End to end: the streaming-overhead ramp of the durable path
(bench/measure/overhead.py), run with ``METRICS_ENABLED`` off and with metrics on in
prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, what a deployment of
several processes uses, and the dearer mode: each value lives in a shared file); the
order alternates between runs. On a machine shared with other work the sustainable rate
swings far more than the metrics could move it, so the second measure is CPU time: the
recording calls of one delivery, timed alone in a process of their own
(``bench.metrics_calls``), against the CPU time per delivery of the durable path with
metrics off (the least seen at any step, the strictest comparison). The path is bound
by CPU, so ``off / (off + metrics)`` is the rate kept with metrics on.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from typing import Any

from bench.config import DURABLE_SETTINGS, PYTHON, ROOT, process_env
from bench.measure import Context, Goal
from bench.measure.common import fmt
from bench.measure.overhead import run_path
from bench.plan import DEVICES, RATE_HZ, Plan

NAME = "metrics"
TITLE = "Cost of the metrics (durable path, metrics on against off)"
GOAL_RATIO = 0.97


def measure(ctx: Context) -> dict[str, Any]:
    order = ["off", "on"] if ctx.run % 2 == 0 else ["on", "off"]
    result: dict[str, Any] = {}
    for mode in order:
        ctx.log(f" metrics {mode}")
        if mode == "off":
            settings = {**DURABLE_SETTINGS, "METRICS_ENABLED": False}
            extra = {"DURABLE_SESSIONS_JSON": json.dumps(settings)}
            result[mode] = run_path(ctx, "durable", label="metrics-off", extra_env=extra)
        else:
            with tempfile.TemporaryDirectory(prefix="ds-bench-metrics-") as directory:
                extra = {"PROMETHEUS_MULTIPROC_DIR": directory}
                result[mode] = run_path(ctx, "durable", label="metrics-on", extra_env=extra)
    off = result["off"]["sustainable_per_s"]
    result["ratio"] = result["on"]["sustainable_per_s"] / off if off else None
    result["calls"] = _recording_calls()
    result["cpu"] = _cpu_model(result["off"], result["calls"], ctx.plan)
    return result


def _recording_calls() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ds-bench-metrics-") as directory:
        env = {**process_env(), "PROMETHEUS_MULTIPROC_DIR": directory}
        done = subprocess.run(
            [PYTHON, "-m", "bench.metrics_calls"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cpu_model(off: dict[str, Any], calls: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """CPU µs per delivery of the path with metrics off, and what the metrics add, at
    the fixed rate: every delivery makes one (mostly skipped) lag call; the sampled
    ones cost more; each delta's group commit is at worst a commit of its own, shared
    by the deliveries of the session's devices."""
    spent = [
        (cpu.get("server") or 0.0) + (cpu.get("writer") or 0.0)
        for step in off["steps"]
        if (cpu := step.get("cpu_ms_per_delivery")) and cpu.get("server")
    ]
    rate = plan.overhead_fixed_streams * RATE_HZ * DEVICES
    added = (
        calls["delivery_skipped_us"]
        + calls["samples_per_s"]
        * max(calls["delivery_observed_us"] - calls["delivery_skipped_us"], 0.0)
        / rate
        + calls["group_commit_us"] / DEVICES
    )
    base = min(spent) * 1000.0 if spent else None
    return {
        "off_us_per_delivery": base,
        "metrics_us_per_delivery": added,
        "rate_per_s": rate,
        "kept": base / (base + added) if base else None,
    }


def _cpu(run: dict[str, Any], mode: str, role: str) -> float | None:
    value = run[mode]["fixed"].get("cpu_ms_per_delivery", {}).get(role)
    return None if value is None else value * 1000.0


def goals(runs: list[dict[str, Any]]) -> list[Goal]:
    ratios = [r["ratio"] for r in runs]
    kept = [r.get("cpu", {}).get("kept") for r in runs]
    return [
        Goal(
            f"Metrics cost, CPU per delivery: rate kept with metrics on ≥ {GOAL_RATIO} x off",
            [
                f"{fmt(k, 3)} (+{fmt(run['cpu']['metrics_us_per_delivery'], 1)} µs on "
                f"{fmt(run['cpu']['off_us_per_delivery'])} µs)"
                if k is not None
                else "-"
                for k, run in zip(kept, runs, strict=True)
            ],
            [None if k is None else k >= GOAL_RATIO for k in kept],
        ),
        Goal(
            f"Metrics cost, end to end: sustainable rate with metrics on ≥ {GOAL_RATIO} x off",
            [
                f"{fmt(r, 2)} ({fmt(run['on']['sustainable_per_s'])} vs "
                f"{fmt(run['off']['sustainable_per_s'])} deliveries/s)"
                for r, run in zip(ratios, runs, strict=True)
            ],
            [None if r is None else r >= GOAL_RATIO for r in ratios],
        ),
    ]


def render(runs: list[dict[str, Any]], plan: Plan) -> str:
    rows = [
        "| run | metrics | sustainable deliveries/s | streams | fixed-rate p50 / p99 (ms) "
        "| CPU µs per delivery at the fixed rate: server / writer |",
        "|---|---|---|---|---|---|",
    ]
    for index, run in enumerate(runs, start=1):
        for mode in ("off", "on"):
            r = run[mode]
            fixed = r["fixed"]
            capped = " (all steps passed)" if r["capped"] else ""
            rows.append(
                f"| {index} | {mode} | {fmt(r['sustainable_per_s'])}{capped} "
                f"| {r['sustainable_streams']} "
                f"| {fmt(fixed['latency_ms']['p50'], 1)} / {fmt(fixed['latency_ms']['p99'], 1)} "
                f"| {fmt(_cpu(run, mode, 'server'))} / {fmt(_cpu(run, mode, 'writer'))} |"
            )
        rows.append(f"| {index} | **ratio on / off** | **{fmt(run['ratio'], 2)}** | | | |")
    text = (
        "End to end: the load and the ramp of section 1 (durable path, one Daphne process, "
        "the Redis pub/sub layer, the writer in a process of its own), with "
        "`METRICS_ENABLED` off, then on in multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`); "
        "the order alternates between runs. A shared machine moves these rates far more "
        "than the metrics can, so compare them with care."
    )
    cpu_rows = [
        "",
        "CPU time: the recording calls of the path, timed alone in multiprocess mode "
        "(`bench.metrics_calls`, µs of CPU per call), against the least CPU time per "
        "delivery (server + writer) of any step with metrics off. Per delivery: one lag "
        "call (skipped within its 10 ms sampling interval), the sampled ones (100 a "
        "second), and a third of a group commit (each delta committed alone, the worst "
        "case, for three devices).",
        "",
        "| run | lag call skipped / sampled (µs) | group commit (µs) | metrics µs per delivery "
        "| off µs per delivery | rate kept |",
        "|---|---|---|---|---|---|",
    ]
    for index, run in enumerate(runs, start=1):
        calls, cpu = run.get("calls"), run.get("cpu")
        if not calls or not cpu:
            continue
        cpu_rows.append(
            f"| {index} | {fmt(calls['delivery_skipped_us'], 2)} / "
            f"{fmt(calls['delivery_observed_us'], 2)} | {fmt(calls['group_commit_us'], 2)} "
            f"| {fmt(cpu['metrics_us_per_delivery'], 2)} | {fmt(cpu['off_us_per_delivery'])} "
            f"| **{fmt(cpu['kept'], 3)}** |"
        )
    return "\n".join([text, "", *rows, *cpu_rows])
