"""6. The cost of metrics: the durable path with Prometheus metrics on and off.

The streaming-overhead ramp of the durable path (bench/measure/overhead.py), run twice in
each run: once with ``METRICS_ENABLED`` off, once with metrics on in prometheus_client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, what a deployment of several processes
uses, and the dearer of the two modes: each value lives in a shared file). The order
alternates between runs. The server records connections, replays and each delivery's
lag; the writer records each group commit.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

from bench.config import DURABLE_SETTINGS
from bench.measure import Context, Goal
from bench.measure.common import fmt
from bench.measure.overhead import run_path
from bench.plan import Plan

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
    return result


def _cpu(run: dict[str, Any], mode: str, role: str) -> float | None:
    value = run[mode]["fixed"].get("cpu_ms_per_delivery", {}).get(role)
    return None if value is None else value * 1000.0


def goals(runs: list[dict[str, Any]]) -> list[Goal]:
    ratios = [r["ratio"] for r in runs]
    return [
        Goal(
            f"Metrics cost: durable sustainable rate with metrics on ≥ {GOAL_RATIO} x off",
            [
                f"{fmt(r, 2)} ({fmt(run['on']['sustainable_per_s'])} vs "
                f"{fmt(run['off']['sustainable_per_s'])} deliveries/s)"
                for r, run in zip(ratios, runs, strict=True)
            ],
            [None if r is None else r >= GOAL_RATIO for r in ratios],
        )
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
        "The load and the ramp of section 1 (durable path, one Daphne process, the Redis "
        "pub/sub layer, the writer in a process of its own), with `METRICS_ENABLED` off, "
        "then on in multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`); the order alternates "
        "between runs. The sustainable rate moves in the ramp's steps, so the CPU time per "
        "delivery at the fixed rate is the finer measure of what the metrics cost."
    )
    return "\n".join([text, "", *rows])
