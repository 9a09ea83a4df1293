"""The machine and software the figures were measured on."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = (
    "Django",
    "channels",
    "channels-redis",
    "daphne",
    "Twisted",
    "redis",
    "psycopg",
    "websockets",
    "django-eventstream",
)


# PostgreSQL settings that change what a commit costs, shown with its version.
POSTGRES_SETTINGS = ("synchronous_commit", "fsync", "autovacuum", "shared_buffers")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def load_average() -> str:
    """The ``uptime`` load averages (1, 5, 15 minutes)."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _service_versions() -> dict[str, str]:
    """PostgreSQL and Redis versions, asked from the running servers."""
    import redis
    from django.db import connection

    from bench.config import REDIS_URL

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
        settings = []
        for name in POSTGRES_SETTINGS:
            cursor.execute(f"SHOW {name}")
            settings.append(f"{name}={cursor.fetchone()[0]}")
    postgres += f" ({', '.join(settings)})"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        redis_version = str(client.info("server")["redis_version"])
    finally:
        client.close()
    return {"PostgreSQL": postgres, "Redis": redis_version}


def describe_date() -> str:
    """Now, in UTC, to the minute."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def describe() -> dict[str, Any]:
    """Machine, date, load and versions (Django must be set up)."""
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "date": describe_date(),
        "nproc": nproc or str(os.cpu_count()),
        "ram_gib": _ram_gib(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "load_before": load_average(),
        "versions": {
            "Python": platform.python_version(),
            **{name: _package(name) for name in PACKAGES},
            **_service_versions(),
        },
    }


# Processes of the measured workload that the bench does not start itself.
WORKLOAD_COMMANDS = frozenset({"postgres", "redis-server"})


def _process_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (parent pid, command, CPU ticks used so far) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        head, _, rest = text.rpartition(")")
        fields = rest.split()
        command = head.split("(", 1)[1] if "(" in head else ""
        table[int(entry.name)] = (int(fields[1]), command, int(fields[11]) + int(fields[12]))
    return table


def _others(table: dict[int, tuple[int, str, int]]) -> dict[int, int]:
    """CPU ticks of the processes that are not the bench's (nor PostgreSQL and Redis)."""
    ours = {os.getpid()}
    grew = True
    while grew:  # the bench's descendants, however deep
        found = {pid for pid, (parent, _, _) in table.items() if parent in ours} - ours
        ours |= found
        grew = bool(found)
    return {
        pid: ticks
        for pid, (_, command, ticks) in table.items()
        if pid not in ours and command not in WORKLOAD_COMMANDS
    }


class LoadProbe:
    """The machine's load over one step: the load average at its end and the CPU that
    processes other than the bench's workload used during it (other people's work).

    A change of background load lands on whichever step runs then; recording it beside
    each step shows which figures it touched."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._before = _others(_process_table())

    def finish(self) -> dict[str, Any]:
        seconds = max(time.monotonic() - self._started, 1e-3)
        after = _others(_process_table())
        ticks = sum(t - self._before.get(pid, 0) for pid, t in after.items())
        cpus = os.cpu_count() or 1
        share = 100.0 * ticks / os.sysconf("SC_CLK_TCK") / seconds / cpus
        return {"loadavg": load_average(), "others_cpu_pct": round(max(share, 0.0), 1)}
