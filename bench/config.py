"""Where the benchmarks run: services, databases, and the environment of each process."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "bench"
RESULTS = Path(__file__).resolve().parent / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
PYTHON = sys.executable

# Only local services: every byte of traffic stays on 127.0.0.1.
HOST = "127.0.0.1"
POSTGRES = os.environ.get("BENCH_POSTGRES", f"postgres://postgres@{HOST}:5432")
DATABASE = os.environ.get("BENCH_DATABASE", "ds_bench")
EVENTSTREAM_DATABASE = os.environ.get("BENCH_EVENTSTREAM_DATABASE", "ds_bench_eventstream")
# The event table filled to millions of events, kept between runs (bench/measure/eventlog.py).
EVENTLOG_DATABASE = os.environ.get("BENCH_EVENTLOG_DATABASE", "ds_bench_eventlog")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", f"redis://{HOST}:6379/5")

# Shared by every process, so that the session cookies made by the runner are valid
# in the servers. Only ever used on 127.0.0.1.
SECRET_KEY = "bench-only-not-secret-0123456789abcdefghijklmnopqrstuvwxyz"
VISITOR = "bench-visitor"

# Group and run-channel names of their own: Redis pub/sub channels are shared by all of
# its databases, and other runs may use the same server.
DURABLE_SETTINGS: dict[str, Any] = {
    "RUNNER": "worker",
    "GROUP_PREFIX": "dsbench",
    "RUN_CHANNEL": "dsbench-agent-runs",
    # One visitor opens every connection of the load, from one address: limits per
    # visitor and IP (security.md) are for real clients, not for the benchmark's.
    "LIMIT_CONNECTIONS_PER_VISITOR": 0,
    "LIMIT_CONNECTIONS_PER_SESSION": 0,
    "LIMIT_CONNECTIONS_PER_IP": 0,
    "LIMIT_LONG_POLLS_PER_VISITOR": 0,
    "LIMIT_MESSAGES_PER_MINUTE": 0,
    "LIMIT_MESSAGES_PER_MINUTE_PER_IP": 0,
    "LIMIT_SESSIONS_PER_HOUR": 0,
    "LIMIT_SESSIONS_PER_HOUR_PER_IP": 0,
    # Experiments only: e.g. BENCH_DS_SETTINGS='{"RESYNC_INTERVAL": 10}'.
    **json.loads(os.environ.get("BENCH_DS_SETTINGS") or "{}"),
}

# Variables of the calling shell that would change what the processes run against.
_INHERITED_OUT = (
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_LAYER",
    "DJANGO_SETTINGS_MODULE",
    "DURABLE_SESSIONS_JSON",
    "DS_PROCESSES",
    "DEBUG",
)


def database_url(name: str = DATABASE) -> str:
    """URL of one of the benchmark databases."""
    return f"{POSTGRES.rstrip('/')}/{name}"


def process_env(
    *,
    layer: str = "redis",
    processes: int = 1,
    settings_module: str = "project.settings",
    database: str = DATABASE,
) -> dict[str, str]:
    """Environment of a server, writer or appender process.

    ``layer`` is ``"redis"`` (channels-redis' pub/sub layer) or ``"memory"``.
    """
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED_OUT}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DATABASE_URL": database_url(database),
            "DATABASE_POOL_MIN": "1",
            "DATABASE_POOL_MAX": "8",
            "DS_PROCESSES": str(processes),
            "DURABLE_SESSIONS_JSON": json.dumps(DURABLE_SETTINGS),
            "DEBUG": "0",
            "SECRET_KEY": SECRET_KEY,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT),
        }
    )
    if layer == "redis":
        env["REDIS_URL"] = REDIS_URL
        env["REDIS_LAYER"] = "pubsub"
    elif layer != "memory":
        raise ValueError(f"unknown layer {layer!r}")
    return env
