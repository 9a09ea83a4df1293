"""Run the benchmarks: ``python -m bench.run`` (what ``make bench`` does).

Options:

- ``--quick``: a 1-2 minute smoke run with small loads and one run each; its report goes
  to ``test-artifacts/bench/scratch.md``, never to the docs.
- ``--only NAME`` (repeatable): run only these measurements and update their sections
  of ``docs/benchmarks.md``, keeping the others from ``bench/results/latest.json``.
- ``--runs N``: runs of each measurement (default 2).
- ``--profile``: record py-spy profiles of the servers, writers and appenders while they
  are measured (``test-artifacts/bench/profiles``; summarise with ``python -m
  bench.profiles``). Profiling slows them down, so the report goes to
  ``test-artifacts/bench/scratch.md``.

Every process it starts is stopped when it ends, on an error or on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from bench import machine, pool, report, services
from bench.config import ARTIFACTS, DOCS, RESULTS
from bench.measure import (
    Context,
    aisdk,
    appends,
    connections,
    durable_streams,
    eventlog,
    latency,
    metrics_cost,
    overhead,
    resume,
    scaleout,
)
from bench.plan import FULL, QUICK, Plan
from bench.procs import Profiling

MEASUREMENTS = {
    module.NAME: module
    for module in (
        overhead,
        latency,
        resume,
        connections,
        appends,
        metrics_cost,
        durable_streams,
        scaleout,
        eventlog,
        aisdk,
    )
}
LATEST = RESULTS / "latest.json"
SCRATCH_JSON = ARTIFACTS / "scratch.json"
SCRATCH_MD = ARTIFACTS / "scratch.md"

_started = time.monotonic()


def log(message: str) -> None:
    """Progress on stdout, with the seconds since the start."""
    print(f"[{time.monotonic() - _started:6.0f} s] {message}", flush=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1-2 minute smoke run")
    parser.add_argument(
        "--only", action="append", choices=sorted(MEASUREMENTS), help="run only this one"
    )
    parser.add_argument("--runs", type=int, help="runs of each measurement")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record py-spy profiles of servers and writers (test-artifacts/bench/profiles)",
    )
    return parser.parse_args(argv)


def _load(path: Path) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text())
    return {"measurements": {}}


def _measure(name: str, plan: Plan, cookie: str, *, profile: bool) -> dict[str, Any]:
    """Every run of one measurement; a run that fails is logged and recorded, and the
    others go on (every process it started has been stopped by then)."""
    module = MEASUREMENTS[name]
    runs: list[dict[str, Any]] = []
    loads: list[list[str]] = []
    errors: list[str] = []
    # A goal is decided by the median of several runs: modules marked DECIDES_GOAL run
    # plan.goal_runs times.
    count = plan.goal_runs if getattr(module, "DECIDES_GOAL", False) else plan.runs
    for index in range(count):
        log(f"{name}: run {index + 1} of {count}")
        if profile:
            Profiling.directory = ARTIFACTS / "profiles" / f"{name}-run{index + 1}"
        services.analyze()
        before = machine.load_average()
        try:
            runs.append(module.measure(Context(plan, cookie, index, log)))
        except Exception as exc:
            log(f"{name}: run {index + 1} failed:\n{traceback.format_exc()}")
            errors.append(f"run {index + 1}: {type(exc).__name__}: {exc}"[:500])
            continue
        loads.append([before, machine.load_average()])
    return {
        "date": machine.describe_date(),
        "plan": plan.as_dict(),
        "load": loads,
        "runs": runs,
        "errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    plan = QUICK if args.quick else FULL
    if args.runs:
        plan = replace(plan, runs=args.runs, goal_runs=args.runs)
    selected = args.only or list(MEASUREMENTS)
    signal.signal(signal.SIGTERM, _terminate)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    log("preparing PostgreSQL and Redis")
    services.prepare()
    pool.setup_django()
    meta = machine.describe()
    log(f"machine: {meta['nproc']} CPUs, {meta['ram_gib']} GiB, load {meta['load_before']}")
    cookie = pool.cookie()
    log("creating the sessions, refreshing PostgreSQL's statistics")
    pool.sessions(pool.needed(plan))
    pool.finish_open_replies()
    services.analyze(vacuum=True)
    # Smoke runs and profiled runs never touch the published figures.
    scratch = args.quick or args.profile
    target_json, target_md = (SCRATCH_JSON, SCRATCH_MD) if scratch else (LATEST, DOCS)
    results = _load(target_json) if args.only else {"measurements": {}}
    failed = False
    try:
        for name in selected:
            entry = _measure(name, plan, cookie, profile=args.profile)
            results["measurements"][name] = entry
            failed = failed or bool(entry["errors"])
    except KeyboardInterrupt:
        log("interrupted: every process started was stopped")
        return 130
    meta["load_after"] = machine.load_average()
    meta["seconds"] = round(time.monotonic() - _started)
    meta["command"] = "python -m bench.run " + " ".join(sys.argv[1:] if argv is None else argv)
    meta["settings_override"] = os.environ.get("BENCH_DS_SETTINGS") or ""
    results["meta"] = meta
    target_json.parent.mkdir(parents=True, exist_ok=True)
    target_json.write_text(json.dumps(results, indent=1) + "\n")
    report.write(target_md, results, MEASUREMENTS)
    log(f"done in {meta['seconds']} s: {target_md.relative_to(ARTIFACTS.parent.parent)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
