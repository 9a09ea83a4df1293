"""6. Durable Streams: this server against the protocol's in-memory reference server.

The same load (``bench.streams_load``) against one Daphne process of the demo project (on
PostgreSQL and Redis pub/sub, streams open to anyone) and against the reference server
``@durable-streams/server`` under Node, in memory, one after the other in the same run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from typing import Any

from bench.config import ROOT, process_env
from bench.measure import Context, Goal
from bench.measure.common import PROJECT_APP
from bench.plan import Plan
from bench.procs import Child, Supervisor, free_port

NAME = "durable_streams"
TITLE = "Durable Streams against the reference server"
REFERENCE = ROOT / "bench" / "streams_reference.mjs"


def _sizes(plan: Plan) -> dict[str, int]:
    quick = plan.resume_events < 10_000
    return {
        "writers": 4 if quick else 8,
        "appends": 50 if quick else 250,
        "catchup": 500 if quick else 5_000,
        "live": 50 if quick else 250,
    }


def _reference(sup: Supervisor) -> str:
    node = shutil.which("node")
    if node is None or not (ROOT / "tests" / "node_modules" / "@durable-streams").exists():
        raise RuntimeError("Node and `npm ci --prefix tests` are needed for the reference server")
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "")}
    child = sup.start(Child("streams-reference", [node, str(REFERENCE), str(port)], env))
    deadline = time.monotonic() + 20
    while b"listening" not in child.log.read_bytes():
        if time.monotonic() > deadline or not child.alive():
            raise RuntimeError(f"the reference server did not start; see {child.log}")
        time.sleep(0.1)
    return f"http://127.0.0.1:{port}"


def measure(ctx: Context) -> dict[str, Any]:
    from bench.streams_load import run_all

    sizes = _sizes(ctx.plan)
    with Supervisor() as sup:
        env = process_env(layer="redis")
        settings = json.loads(env["DURABLE_SESSIONS_JSON"])
        env["DURABLE_SESSIONS_JSON"] = json.dumps({**settings, "STREAMS_ACCESS": "anyone"})
        ours = sup.daphne("streams-daphne", PROJECT_APP, env)
        ctx.log("  durable streams: this server")
        mine = asyncio.run(run_all(ours.origin, sizes))
        sup.stop(ours.child)
        ctx.log("  durable streams: the reference server")
        reference = asyncio.run(run_all(_reference(sup), sizes))
    return {"sizes": sizes, "ours": mine, "reference": reference}


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "-"


def goals(runs: list[dict[str, Any]]) -> list[Goal]:
    return [
        Goal(
            "Durable Streams: live follow over long poll, median < 100 ms",
            [f"{r['ours']['live']['median_ms']:.1f} ms" for r in runs],
            [r["ours"]["live"]["median_ms"] < 100 for r in runs],
        )
    ]


def render(runs: list[dict[str, Any]], plan: Plan) -> str:
    sizes = runs[0]["sizes"]
    lines = [
        f"Load: appends — {sizes['writers']} streams written at once, {sizes['appends']} "
        f"appends of 100 bytes each, one after the other; catch-up — one stream of "
        f"{sizes['catchup']:,} appends read from `-1` (best of 3); live follow — a long-polling "
        f"reader and {sizes['live']} appends 20 ms apart. This server: one Daphne process, "
        "PostgreSQL, Redis pub/sub; the reference: `@durable-streams/server` in memory under "
        "Node. Clients: Python `httpx` on the same machine, the same for both.",
        "",
        "| run | server | appends/s | catch-up MB/s | live median ms | live p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for number, run in enumerate(runs, start=1):
        for label in ("ours", "reference"):
            r = run[label]
            lines.append(
                f"| {number} | {'this server' if label == 'ours' else 'reference'} | "
                f"{r['appends']['per_second']:,.0f} | {r['catchup']['mb_per_second']:.1f} | "
                f"{r['live']['median_ms']:.1f} | {r['live']['p99_ms']:.1f} |"
            )
        o, t = run["ours"], run["reference"]
        lines.append(
            f"| {number} | ratio | {_ratio(o['appends']['per_second'], t['appends']['per_second'])}"
            f" | {_ratio(o['catchup']['mb_per_second'], t['catchup']['mb_per_second'])} | "
            f"{_ratio(o['live']['median_ms'], t['live']['median_ms'])} | "
            f"{_ratio(o['live']['p99_ms'], t['live']['p99_ms'])} |"
        )
    lines += [
        "",
        "What limits it: every append here is a committed PostgreSQL transaction (one "
        "statement, one WAL flush) and passes through Django's request handling and the one "
        "database thread of the process; the reference keeps streams in a JavaScript map and "
        "loses them on restart. Catch-up reads come from the database in chunks of "
        "`STREAMS_READ_BYTES`. A live reader is woken through Redis pub/sub by the process "
        "that committed the append, then reads the database.",
    ]
    return "\n".join(lines)
