"""8. Scale-out: the streaming overhead with two Daphne processes behind the Redis layer.

The overhead measurement's load (sessions of three devices, a stamped delta every 40 ms
per streaming session, one writer process) on one and on two Daphne processes, the
durable path and the bare relay side by side: four set-ups, all up at once and measured
in turn at each rate (:mod:`bench.interleave`), so that the machine's other work reaches
every one of them alike. With two processes the devices of each session alternate
between them, so every delta crosses the Redis pub/sub layer to both. The figure is the
2-vs-1 ratio of sustainable rates, for each path.
"""

from __future__ import annotations

from typing import Any

from bench import interleave
from bench.interleave import RigSpec
from bench.measure import Context, Goal
from bench.measure.common import fmt
from bench.plan import DEVICES, RATE_HZ, Plan

NAME = "scaleout"
TITLE = "Scale-out: one and two server processes behind Redis"
DECIDES_GOAL = True
GOAL = 1.7
SPECS: list[RigSpec] = [
    ("durable-1", "durable", 1),
    ("relay-1", "relay", 1),
    ("durable-2", "durable", 2),
    ("relay-2", "relay", 2),
]
LABELS = [label for label, _, _ in SPECS]


def measure(ctx: Context) -> dict[str, Any]:
    """The four set-ups interleaved; the order they start and step in rotates per run."""
    count = len(SPECS)
    result: dict[str, Any] = interleave.measure_rigs(
        ctx,
        SPECS,
        ctx.plan.overhead_max_streams,
        order=lambda run: [(i + run) % count for i in range(count)],
    )
    for path in ("durable", "relay"):
        one = result[f"{path}-1"]["sustainable_per_s"]
        two = result[f"{path}-2"]["sustainable_per_s"]
        result[f"{path}_scale"] = two / one if one else None
    one, two = (result[f"relay-{n}"]["sustainable_per_s"] for n in (1, 2))
    result["overhead_1"] = result["durable-1"]["sustainable_per_s"] / one if one else None
    result["overhead_2"] = result["durable-2"]["sustainable_per_s"] / two if two else None
    return result


def goals(runs: list[dict[str, Any]]) -> list[Goal]:
    scale = [r["durable_scale"] for r in runs]
    return [
        Goal(
            f"Scale-out: durable sustainable rate with 2 processes ≥ {GOAL} x with 1 "
            "(Redis pub/sub layer)",
            [
                f"{fmt(s, 2)} ({fmt(r['durable-2']['sustainable_per_s'])} vs "
                f"{fmt(r['durable-1']['sustainable_per_s'])}; relay {fmt(r['relay_scale'], 2)})"
                for s, r in zip(scale, runs, strict=True)
            ],
            [None if s is None else s >= GOAL for s in scale],
            values=scale,
            meets=lambda s: s >= GOAL,
        )
    ]


def render(runs: list[dict[str, Any]], plan: Plan) -> str:
    rows = [
        "| run | set-up | processes | connections | sustainable deliveries/s | streams |",
        "|---|---|---|---|---|---|",
    ]
    for index, run in enumerate(runs, start=1):
        for label in LABELS:
            r = run[label]
            capped = " (all steps passed)" if r["capped"] else ""
            rows.append(
                f"| {index} | {label} | {r['processes']} | {r['connections']} "
                f"| {fmt(r['sustainable_per_s'])}{capped} | {r['sustainable_streams']} |"
            )
        rows.append(
            f"| {index} | **2 vs 1** | | | durable **{fmt(run['durable_scale'], 2)}**, "
            f"relay {fmt(run['relay_scale'], 2)} | |"
        )
        rows.append(
            f"| {index} | **durable vs relay** | | | 1 process {fmt(run['overhead_1'], 2)}, "
            f"2 processes {fmt(run['overhead_2'], 2)} | |"
        )
    load = (
        f"Load: per set-up, {plan.overhead_max_streams} sessions x {DEVICES} devices connected, "
        f"k of them streaming one delta every {1000 / RATE_HZ:.0f} ms (k x "
        f"{RATE_HZ * DEVICES:.0f} deliveries/s), as in the overhead measurement; each set-up "
        "has sessions of its own. With 2 processes the devices of a session alternate "
        "between them. All four set-ups are up together and step in turn at each rate "
        f"(rates grow x{plan.overhead_factor} until every set-up has failed, up to "
        f"{plan.overhead_max_streams} streams, then {plan.overhead_bisect_steps} bisection "
        "steps per boundary). Clients, writers, PostgreSQL and Redis share the machine with "
        "the servers: on a machine with few CPUs the second process competes with them, "
        "which bounds what two processes can show."
    )
    return "\n".join([load, "", *rows, "", *interleave.steps_table(runs, LABELS)])
