"""3. Resume cost: reconnecting to a long session, from the start and from near the tail.

One session holds exactly ``resume_events`` events (a reply of that many deltas, written
by ``bench.writer`` through the group commit and kept between runs). A client process
connects with ``after_seq=0`` and with ``after_seq=last - resume_tail`` and times, from
the start of the connection, the first event frame and the ``live`` frame (caught up).
One Daphne process on PostgreSQL and Redis pub/sub; nothing else running.
"""

from __future__ import annotations

from typing import Any

from bench import pool
from bench.clients import ClientPool
from bench.measure import Context, Goal
from bench.measure.common import durable_servers, fmt
from bench.plan import Plan
from bench.procs import Supervisor
from bench.stats import median

NAME = "resume"
TITLE = "Resume cost"


def _summary(timed: dict[str, Any]) -> dict[str, Any]:
    return {
        "first_ms": [round(x, 1) for x in timed["first_ms"]],
        "live_ms": [round(x, 1) for x in timed["live_ms"]],
        "events": timed["events"],
        "first_median_ms": round(median(timed["first_ms"]) or 0, 1),
        "live_median_ms": round(median(timed["live_ms"]) or 0, 1),
    }


def measure(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    events = plan.resume_events
    session, ready = pool.resume_session(events)
    with Supervisor() as sup:
        servers, env = durable_servers(sup, "resume", layer="redis", processes=1)
        if not ready:
            ctx.log(f"  seeding a session of {events:,} events")
            writer = sup.module("resume-writer", "bench.writer", env)
            seeded = writer.request({"cmd": "seed", "session": session, "events": events}, 600)
            if seeded["last_seq"] != events:
                raise RuntimeError(f"seeded {seeded['last_seq']} events, not {events}")
            sup.stop(writer)
        clients = ClientPool(sup, "resume", 1, env)
        # As client.js asks: the replay in ``events`` frames.
        url = f"{servers[0].ws}/ws/sessions/{session}/?batch=1&after_seq="
        clients.resume(url + "0", ctx.cookie, 1)  # warm-up: imports, pool connections
        full = _summary(clients.resume(url + "0", ctx.cookie, plan.resume_repeats))
        tail_after = events - plan.resume_tail
        tail = _summary(clients.resume(url + str(tail_after), ctx.cookie, plan.resume_repeats))
    if any(n != events for n in full["events"]) or any(
        n != plan.resume_tail for n in tail["events"]
    ):
        raise RuntimeError(f"resume replayed the wrong number of events: {full}, {tail}")
    ctx.log(
        f"  from 0: first event {full['first_median_ms']} ms, live {full['live_median_ms']} ms;"
        f" from {tail_after}: first {tail['first_median_ms']} ms, live {tail['live_median_ms']} ms"
    )
    return {"events": events, "from_zero": full, "near_tail": tail, "tail_after": tail_after}


def goals(runs: list[dict[str, Any]]) -> list[Goal]:
    return [
        Goal(
            f"Resume: a {runs[0]['events']:,}-event session caught up in < 250 ms",
            [f"{fmt(r['from_zero']['live_median_ms'])} ms (median)" for r in runs],
            [r["from_zero"]["live_median_ms"] < 250 for r in runs],
        )
    ]


def render(runs: list[dict[str, Any]], plan: Plan) -> str:
    load = (
        f"Load: one session of {plan.resume_events:,} events (session created, then streamed "
        "replies of 100 events: message created, 98 deltas of 36 characters, completed). One "
        "Daphne process, PostgreSQL, Redis pub/sub layer. Times from opening the websocket "
        f"to the first event frame and to the `live` frame; {plan.resume_repeats} "
        "reconnections each after one warm-up, median and every value. Near the tail: "
        f"`after_seq` = last - {plan.resume_tail}."
    )
    rows = [
        "| run | from | events replayed | first event, median ms | caught up (`live`), median ms "
        "| every `live` time, ms |",
        "|---|---|---|---|---|---|",
    ]
    for index, run in enumerate(runs, start=1):
        for label, key in (("seq 0", "from_zero"), (f"seq {run['tail_after']:,}", "near_tail")):
            r = run[key]
            rows.append(
                f"| {index} | {label} | {r['events'][0]:,} | {fmt(r['first_median_ms'], 1)} "
                f"| {fmt(r['live_median_ms'], 1)} | {', '.join(f'{x:.0f}' for x in r['live_ms'])} |"
            )
    return "\n".join([load, "", *rows])
