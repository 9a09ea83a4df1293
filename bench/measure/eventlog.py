"""9. The event table after many events: its size, and the append rate it still allows.

A database of its own (``BENCH_EVENTLOG_DATABASE``) is filled once, in bulk, to
``eventlog_events`` events (10 million; fewer in the quick plan) spread over
``eventlog_sessions`` closed-looking sessions, and kept between runs. The measurement
reads the table's size (heap, indexes, total, bytes per event), then runs the append
measurement's durable appender against that database and against the everyday benchmark
database in turn (small, large, small, large), so that both see the same background
load. What decides whether the table needs another index or partitioning is whether
appends slow down as it grows: the ratio of the two rates.

Compaction: on the everyday benchmark database, a reply of ``compaction_deltas`` deltas is
written by the writer process (group commit), completed, and compacted on demand
(``service.compaction.compact_message``, what the workers' background pass calls); the rows
the reply holds in the event table are counted before and after.
"""

from __future__ import annotations

import math
from typing import Any

import psycopg

from bench import pool, services
from bench.config import DATABASE, EVENTLOG_DATABASE, database_url, process_env
from bench.machine import LoadProbe
from bench.measure import Context, Goal
from bench.measure.common import fmt
from bench.plan import Plan
from bench.procs import Supervisor
from bench.stats import median

NAME = "eventlog"
TITLE = "The event table after many events"
FILL_TITLE = "bench-eventlog-fill"
# Events inserted per statement while filling (one per session per round).
ROUND_EVENTS = 1_000_000
DELTA_TEXT = "x" * 35  # the size of a typical coalesced delta
GOAL_SLOWDOWN = 0.8  # appends at 10 M events keep ≥ 80 % of the rate on a small table
COMPACTION_TITLE = "bench-compaction"
COMPACTION_DELTAS = 2_000
GOAL_COMPACTED_ROWS = 3  # a finished reply's rows in the event table after compaction


def _count(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM durable_sessions_event").fetchone()
    return int(row[0]) if row else 0


def fill(ctx: Context) -> dict[str, Any]:
    """Fill the event table up to the plan's size; returns how long it took."""
    plan = ctx.plan
    created = services.ensure_database(EVENTLOG_DATABASE)
    services.migrate("project.settings", EVENTLOG_DATABASE)
    with psycopg.connect(database_url(EVENTLOG_DATABASE), autocommit=True) as conn:
        have = _count(conn)
        need = plan.eventlog_events - have
        if need <= 0:
            return {"created": created, "inserted": 0, "had": have}
        ctx.log(f"  filling the event table: {have:,} events, adding {need:,}")
        conn.execute(
            """
            INSERT INTO durable_sessions_durablesession
                (id, owner_visitor, title, control, status, created_at, updated_at,
                 metadata, last_seq)
            SELECT gen_random_uuid(), 'bench-eventlog', %s, 'ai', 'open', now(), now(),
                   '{}'::jsonb, 0
            FROM generate_series(1, %s - (SELECT count(*) FROM durable_sessions_durablesession
                                          WHERE title = %s))
            """,
            [FILL_TITLE, plan.eventlog_sessions, FILL_TITLE],
        )
        # Events per session in each round: never more than the rounds still need.
        per_session = math.ceil(need / plan.eventlog_sessions)
        per_round = max(1, min(ROUND_EVENTS // plan.eventlog_sessions, per_session))
        rounds = math.ceil(per_session / per_round)
        for index in range(rounds):
            with conn.transaction():
                conn.execute(
                    """
                    INSERT INTO durable_sessions_event (session_id, seq, type, payload,
                                                       created_at)
                    SELECT s.id, s.last_seq + g, 'message.delta',
                           jsonb_build_object('message_id', 1, 'part', 0, 'delta', %s::text),
                           now()
                    FROM durable_sessions_durablesession s
                    CROSS JOIN generate_series(1, %s) g
                    WHERE s.title = %s
                    """,
                    [DELTA_TEXT, per_round, FILL_TITLE],
                )
                conn.execute(
                    "UPDATE durable_sessions_durablesession SET last_seq = last_seq + %s "
                    "WHERE title = %s",
                    [per_round, FILL_TITLE],
                )
            ctx.log(f"  filled round {index + 1} of {rounds}")
        conn.execute("VACUUM (ANALYZE) durable_sessions_event")
        return {"created": created, "inserted": _count(conn) - have, "had": have}


def sizes() -> dict[str, Any]:
    with psycopg.connect(database_url(EVENTLOG_DATABASE), autocommit=True) as conn:
        events = _count(conn)
        row = conn.execute(
            "SELECT pg_relation_size('durable_sessions_event'), "
            "pg_indexes_size('durable_sessions_event'), "
            "pg_total_relation_size('durable_sessions_event')"
        ).fetchone()
    assert row is not None
    heap, indexes, total = (int(x) for x in row)
    return {
        "events": events,
        "heap_bytes": heap,
        "index_bytes": indexes,
        "total_bytes": total,
        "bytes_per_event": round(total / events, 1) if events else None,
    }


def _append(sup: Supervisor, name: str, database: str, sessions: int, seconds: float) -> Any:
    env = process_env(layer="redis", database=database)
    child = sup.module(
        name,
        "bench.appender",
        env,
        "durable",
        "--sessions",
        str(sessions),
        "--seconds",
        str(seconds),
    )
    try:
        return child.receive(300)
    finally:
        sup.stop(child)


def _reply_rows(session_id: str, after_seq: int) -> int:
    from durable_sessions.models import Event

    return Event.objects.filter(session_id=session_id, seq__gt=after_seq).count()


def compaction(sup: Supervisor) -> dict[str, Any]:
    """Rows of one finished reply of :data:`COMPACTION_DELTAS` deltas in the event table,
    before and after it is compacted."""
    from durable_sessions.service.compaction import compact_message

    [session_id] = pool.sessions(1, title=COMPACTION_TITLE)
    before = pool.last_seqs([session_id])[session_id]
    writer = sup.module("eventlog-compaction-writer", "bench.writer", process_env(layer="redis"))
    grown = writer.request({"cmd": "grow", "session": session_id, "deltas": COMPACTION_DELTAS}, 600)
    writer.request({"cmd": "finish"}, 600)
    sup.stop(writer)
    rows_before = _reply_rows(session_id, before)
    done = compact_message(int(grown["message"]))
    return {
        "deltas": COMPACTION_DELTAS,
        "rows_before": rows_before,
        "rows_after": _reply_rows(session_id, before),
        "deleted": done.deleted,
    }


def measure(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    filled = fill(ctx)
    size = sizes()
    ctx.log(
        f"  {size['events']:,} events: {size['total_bytes'] / 2**20:,.0f} MiB "
        f"({size['bytes_per_event']} bytes per event)"
    )
    sessions = min(plan.append_sessions)
    steps = []
    with Supervisor() as sup:
        compacted = compaction(sup)
        ctx.log(
            f"  a finished reply of {compacted['deltas']:,} deltas: {compacted['rows_before']:,} "
            f"rows, {compacted['rows_after']:,} after compaction"
        )
        for round_ in range(2):
            for label, database in (("small", DATABASE), ("large", EVENTLOG_DATABASE)):
                probe = LoadProbe()
                r = _append(
                    sup, f"eventlog-{label}-{round_}", database, sessions, plan.append_seconds
                )
                steps.append(
                    {"table": label, "per_second": r["per_second"], "load": probe.finish()}
                )
                ctx.log(f"  appends, {label} table: {r['per_second']:.0f} events/s")
    small = median([s["per_second"] for s in steps if s["table"] == "small"])
    large = median([s["per_second"] for s in steps if s["table"] == "large"])
    return {
        "fill": filled,
        "size": size,
        "compaction": compacted,
        "sessions": sessions,
        "steps": steps,
        "small_per_s": small,
        "large_per_s": large,
        "ratio": large / small if small and large is not None else None,
    }


def goals(runs: list[dict[str, Any]]) -> list[Goal]:
    ratios = [r["ratio"] for r in runs]
    return [
        Goal(
            f"Appends with {runs[0]['size']['events']:,} events in the table ≥ "
            f"{GOAL_SLOWDOWN} x on a small table (no index or partitioning needed)",
            [
                f"{fmt(r['ratio'], 2)} ({fmt(r['large_per_s'])} vs {fmt(r['small_per_s'])}/s)"
                for r in runs
            ],
            [None if x is None else x >= GOAL_SLOWDOWN for x in ratios],
            values=ratios,
            meets=lambda x: x >= GOAL_SLOWDOWN,
        ),
        Goal(
            f"Rows in the event table of a finished {COMPACTION_DELTAS:,}-delta reply ≤ "
            f"{GOAL_COMPACTED_ROWS} after compaction",
            [
                f"{r['compaction']['rows_after']} (from {r['compaction']['rows_before']:,})"
                if "compaction" in r
                else "not measured"
                for r in runs
            ],
            [
                r["compaction"]["rows_after"] <= GOAL_COMPACTED_ROWS if "compaction" in r else None
                for r in runs
            ],
        ),
    ]


def render(runs: list[dict[str, Any]], plan: Plan) -> str:
    intro = (
        f"The event table of a database of its own, filled once in bulk to "
        f"{plan.eventlog_events:,} events over {plan.eventlog_sessions:,} sessions "
        f"(35-character `message.delta` payloads), then the append measurement's durable "
        f"appender ({min(plan.append_sessions)} sessions, {plan.append_seconds:.0f} s timed) "
        "against it and against the everyday benchmark database in turn: small, large, "
        "small, large; the median of each. Sizes: `pg_relation_size` (heap), "
        "`pg_indexes_size`, `pg_total_relation_size` (with TOAST)."
    )
    rows = [
        "| run | events | heap MiB | indexes MiB | total MiB | bytes/event "
        "| appends/s small table | appends/s large table | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for index, run in enumerate(runs, start=1):
        s = run["size"]
        rows.append(
            f"| {index} | {s['events']:,} | {s['heap_bytes'] / 2**20:,.0f} "
            f"| {s['index_bytes'] / 2**20:,.0f} | {s['total_bytes'] / 2**20:,.0f} "
            f"| {s['bytes_per_event']} | {fmt(run['small_per_s'])} | {fmt(run['large_per_s'])} "
            f"| **{fmt(run['ratio'], 2)}** |"
        )
    steps = ["", "| run | table | appends/s | others' CPU % | load avg |", "|---|---|---|---|---|"]
    for index, run in enumerate(runs, start=1):
        for s in run["steps"]:
            load = s.get("load", {})
            steps.append(
                f"| {index} | {s['table']} | {fmt(s['per_second'])} "
                f"| {load.get('others_cpu_pct', '-')} | {load.get('loadavg', '-')} |"
            )
    compacted = [
        "",
        f"Compaction: a reply of {COMPACTION_DELTAS:,} deltas written by the writer process, "
        "completed, then compacted on demand (`compact_message`); its rows in the event table:",
        "",
        "| run | rows before | rows after | deleted |",
        "|---|---|---|---|",
    ]
    for index, run in enumerate(runs, start=1):
        c = run.get("compaction")
        if c:
            compacted.append(
                f"| {index} | {c['rows_before']:,} | {c['rows_after']} | {c['deleted']:,} |"
            )
    return "\n".join([intro, "", *rows, *steps, *compacted])
