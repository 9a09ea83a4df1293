"""5. Append rate: durable events per second one process sustains on PostgreSQL.

``bench.appender durable``: one process, many sessions streaming at once, each a
coroutine appending deltas through ``service.delta_writer`` as fast as they commit
(published to Redis pub/sub after commit). ``bench.appender eventstream``: the same
deltas through django-eventstream's ``send_event`` (model storage, Redis publish) on a
channel per session, from one thread (what async code gets through ``sync_to_async``)
and from several threads, in a database of its own. Both in the same run.
"""

from __future__ import annotations

from typing import Any

from bench.config import EVENTSTREAM_DATABASE, process_env
from bench.measure import Context, Goal
from bench.measure.common import fmt
from bench.plan import Plan
from bench.procs import Supervisor

NAME = "appends"
TITLE = "Append rate on PostgreSQL"


def _append(sup: Supervisor, name: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    child = sup.module(name, "bench.appender", env, *args, profile=True)
    try:
        return child.receive(300)
    finally:
        sup.stop(child)


def measure(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    seconds = str(plan.append_seconds)
    durable: dict[str, Any] = {}
    eventstream: dict[str, Any] = {}
    with Supervisor() as sup:
        env = process_env(layer="redis")
        for sessions in plan.append_sessions:
            r = _append(
                sup,
                f"append-durable-{sessions}",
                env,
                "durable",
                "--sessions",
                str(sessions),
                "--seconds",
                seconds,
            )
            durable[str(sessions)] = r
            ctx.log(f"  durable, {sessions} sessions: {r['per_second']:.0f} events/s")
        es_env = process_env(
            layer="redis",
            settings_module="bench.eventstream.settings",
            database=EVENTSTREAM_DATABASE,
        )
        es_env["DATABASE_POOL_MAX"] = str(max(plan.eventstream_threads) + 4)
        sessions = str(min(plan.append_sessions))
        for threads in plan.eventstream_threads:
            r = _append(
                sup,
                f"append-eventstream-{threads}",
                es_env,
                "eventstream",
                "--sessions",
                sessions,
                "--seconds",
                seconds,
                "--threads",
                str(threads),
            )
            eventstream[str(threads)] = r
            ctx.log(f"  eventstream, {threads} threads: {r['per_second']:.0f} events/s")
    best_durable = max(r["per_second"] for r in durable.values())
    best_peer = max(r["per_second"] for r in eventstream.values())
    same = durable[sessions]["per_second"]
    return {
        "durable": durable,
        "eventstream": eventstream,
        "best_durable_per_s": best_durable,
        "best_eventstream_per_s": best_peer,
        "ratio": same / best_peer if best_peer else None,
        "ratio_sessions": int(sessions),
    }


# Durable appends per second per process, with each of plan.append_sessions.
GOAL_PER_S = 10_000


def _same(run: dict[str, Any]) -> float:
    """The durable rate at the session count the ratio compares."""
    return run["durable"][str(run["ratio_sessions"])]["per_second"]


def goals(runs: list[dict[str, Any]]) -> list[Goal]:
    return [
        Goal(
            f"Appends ≥ {GOAL_PER_S:,} durable events/s per process on PostgreSQL, "
            "at every session count",
            [
                ", ".join(
                    f"{fmt(r['per_second'])}/s ({sessions} sessions)"
                    for sessions, r in run["durable"].items()
                )
                for run in runs
            ],
            [all(r["per_second"] >= GOAL_PER_S for r in run["durable"].values()) for run in runs],
        ),
        Goal(
            "Appends ≥ 10 x django-eventstream's send_event",
            [
                f"{fmt(r['ratio'], 1)} x ({fmt(_same(r))} vs {fmt(r['best_eventstream_per_s'])}/s)"
                for r in runs
            ],
            [None if r["ratio"] is None else r["ratio"] >= 10 for r in runs],
        ),
    ]


def render(runs: list[dict[str, Any]], plan: Plan) -> str:
    load = (
        f"Load: {plan.append_seconds:.0f} s timed after 1 s of warm-up, one process each. "
        f"Durable: {', '.join(str(s) for s in plan.append_sessions)} sessions with a "
        "streaming reply, one coroutine per session appending 35-character deltas through "
        "`service.delta_writer` back to back. django-eventstream: "
        f"{min(plan.append_sessions)} channels, `send_event(channel, 'message', ...)` back to "
        f"back from {' and '.join(str(t) for t in plan.eventstream_threads)} thread(s) "
        "(`DjangoModelStorage`, `EVENTSTREAM_REDIS` set). The ratio compares the same "
        f"{min(plan.append_sessions)} sessions against eventstream's best thread count."
    )
    rows = ["| run | writer | concurrency | events | events/s |", "|---|---|---|---|---|"]
    for index, run in enumerate(runs, start=1):
        for sessions, r in run["durable"].items():
            rows.append(
                f"| {index} | durable (`delta_writer`) | {sessions} sessions | {r['events']:,} "
                f"| {fmt(r['per_second'])} |"
            )
        for threads, r in run["eventstream"].items():
            rows.append(
                f"| {index} | django-eventstream `send_event` | {threads} thread(s) "
                f"| {r['events']:,} | {fmt(r['per_second'])} |"
            )
        rows.append(f"| {index} | **ratio** | | | **{fmt(run['ratio'], 1)} x** |")
    return "\n".join([load, "", *rows])
