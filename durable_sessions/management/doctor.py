"""The checks of ``manage.py ds_doctor``: is this deployment sound, and what to fix.

Each check yields :class:`Finding` rows (ok, warn or fail) with what to do about a
problem. They read the settings, the database and the channel layer; they write nothing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.core import checks as django_checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.models import BigIntegerField, Count, F, Max, Q, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils import timezone

from durable_sessions import wire
from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery import health
from durable_sessions.models import (
    AgentRun,
    Control,
    DurableSession,
    RunStatus,
    Status,
)

OK, WARN, FAIL = "ok", "warn", "fail"
DOCTOR_MESSAGE_TYPE = "ds.doctor"
# PostgreSQL older than this lacks what the app relies on (unnest of several arrays with
# column names, JSONB) or is out of support.
MIN_POSTGRES = 130000
ECHO_TIMEOUT = 15.0


@dataclass
class Finding:
    """One result: the area, ok/warn/fail, what was found, and what to do."""

    area: str
    level: str
    text: str
    fix: str = ""


@dataclass
class Options:
    stuck_after: float = 60.0  # seconds a pending run may wait for a worker
    queue_warn: float = 900.0  # seconds a queued session may wait for a human
    recent_sessions: int = 200  # sessions whose log is checked for gaps
    skew_tolerance: float = 2.0  # seconds of clock difference tolerated
    cross_process: bool = True


def check_settings(options: Options) -> Iterator[Finding]:
    try:
        ds_settings.validate()
    except ImproperlyConfigured as exc:
        yield Finding("settings", FAIL, str(exc), "correct the DURABLE_SESSIONS setting")
        return
    found = False
    for message in django_checks.run_checks():
        if not (message.id or "").startswith(("durable_sessions.", "handoff_console.")):
            continue
        found = True
        level = FAIL if message.level >= django_checks.ERROR else WARN
        yield Finding("settings", level, f"{message.id}: {message.msg}", message.hint or "")
    if not found:
        yield Finding("settings", OK, "DURABLE_SESSIONS is valid; no system check complains")


def _layer_is_local(layer: object) -> bool:
    return isinstance(layer, InMemoryChannelLayer)


def check_channel_layer(options: Options) -> Iterator[Finding]:
    layer = get_channel_layer()
    if layer is None:
        yield Finding("channel layer", FAIL, "no channel layer is configured", "set CHANNEL_LAYERS")
        return
    name = type(layer).__name__
    try:
        async_to_sync(_bounded)(health.channel_layer_round_trip)
    except Exception as exc:
        yield Finding(
            "channel layer",
            FAIL,
            f"{name}: a message sent to this process did not come back ({_describe(exc)})",
            "check that the channel layer's Redis is reachable from here",
        )
        return
    many = ds_settings.PROCESSES > 1 or ds_settings.RUNNER == "worker"
    if _layer_is_local(layer):
        if many:
            yield Finding(
                "channel layer",
                FAIL,
                f"{name} reaches this process only, but the deployment has several "
                f"(PROCESSES={ds_settings.PROCESSES}, RUNNER={ds_settings.RUNNER!r})",
                "use channels-redis (durable_sessions.delivery.layers.RedisPubSubLayer)",
            )
        else:
            yield Finding("channel layer", OK, f"{name}: round trip in this one process")
        return
    if not options.cross_process:
        yield Finding("channel layer", OK, f"{name}: round trip in this process")
        return
    yield from _cross_process(name)


def _cross_process(name: str) -> Iterator[Finding]:
    """Start another process that sends to this one; its clock comes with the message."""

    async def echo() -> dict[str, object]:
        layer = get_channel_layer()
        channel = await layer.new_channel("ds-doctor.")
        module = os.environ.get("DJANGO_SETTINGS_MODULE") or settings.SETTINGS_MODULE
        if not module:
            raise RuntimeError("DJANGO_SETTINGS_MODULE is unknown: cannot start a process")
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": module}
        child = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "django", "ds_doctor", "--echo-to", channel),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(ECHO_TIMEOUT):
                while True:
                    message = await layer.receive(channel)
                    if message.get("type") == DOCTOR_MESSAGE_TYPE:
                        return {**message, "received": time.time()}
        finally:
            if child.returncode is None:
                child.kill()
            await child.wait()

    try:
        message = async_to_sync(echo)()
    except Exception as exc:
        yield Finding(
            "channel layer",
            FAIL,
            f"{name}: no message from another process within {ECHO_TIMEOUT:g} s ({_describe(exc)})",
            "every process must use the same channel layer (the same Redis and prefix)",
        )
        return
    yield Finding("channel layer", OK, f"{name}: round trip from another process")
    skew = float(message["received"]) - float(message["sent"])  # type: ignore[arg-type]
    if abs(skew) > ECHO_TIMEOUT:
        yield Finding("clocks", WARN, f"another process's clock differs by {skew:.1f} s")


def send_echo(channel: str) -> None:
    """The other process of the cross-process check: say hello with its clock."""

    async def send() -> None:
        layer = get_channel_layer()
        await layer.send(
            channel, {"type": DOCTOR_MESSAGE_TYPE, "pid": os.getpid(), "sent": time.time()}
        )

    async_to_sync(send)()


async def _bounded(check: Callable[[], Awaitable[None]]) -> None:
    timeout = ds_settings.HEALTH_CHECK_TIMEOUT * 2
    await asyncio.wait_for(check(), timeout)


def check_database(options: Options) -> Iterator[Finding]:
    try:
        health.ping_database()
    except Exception as exc:
        yield Finding("database", FAIL, f"cannot query: {_describe(exc)}", "check DATABASES")
        return
    vendor = connection.vendor
    if vendor == "postgresql":
        version = connection.pg_version or 0
        major = version // 10000
        if version < MIN_POSTGRES:
            yield Finding(
                "database", FAIL, f"PostgreSQL {major} is too old", "upgrade to PostgreSQL 13+"
            )
        else:
            yield Finding("database", OK, f"PostgreSQL {major}")
    elif vendor == "sqlite":
        many = ds_settings.PROCESSES > 1 or ds_settings.RUNNER == "worker"
        yield Finding(
            "database",
            FAIL if many else OK,
            "SQLite" + (": one machine, one writer at a time" if many else " (one process)"),
            "use PostgreSQL for several processes" if many else "",
        )
    else:
        yield Finding("database", WARN, f"{vendor} is not tested", "use PostgreSQL")
    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        yield Finding(
            "database", FAIL, f"{len(plan)} migration(s) not applied", "run manage.py migrate"
        )
        return
    yield from _indexes()


def _indexes() -> Iterator[Finding]:
    from django.apps import apps

    missing: list[str] = []
    with connection.cursor() as cursor:
        for model in apps.get_app_config("durable_sessions").get_models():
            table = model._meta.db_table
            present = set(connection.introspection.get_constraints(cursor, table))
            wanted = [i.name for i in model._meta.indexes] + [
                c.name for c in model._meta.constraints
            ]
            missing += [f"{table}.{name}" for name in wanted if name not in present]
    if missing:
        yield Finding(
            "database",
            FAIL,
            "indexes missing: " + ", ".join(missing),
            "run manage.py migrate; recreate indexes dropped by hand",
        )
    else:
        yield Finding("database", OK, "the app's indexes and constraints are in place")


def check_clocks(options: Options) -> Iterator[Finding]:
    """This process's clock against the database's, and workers' clocks by their leases."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT CURRENT_TIMESTAMP")
        (db_now,) = cursor.fetchone()
    if isinstance(db_now, str):  # SQLite: text, UTC, whole seconds
        from datetime import UTC, datetime

        db_now = datetime.fromisoformat(db_now).replace(tzinfo=UTC)
    if timezone.is_naive(db_now):
        db_now = timezone.make_aware(db_now, timezone.get_current_timezone())
    tolerance = options.skew_tolerance + (1.0 if connection.vendor == "sqlite" else 0.0)
    skew = (timezone.now() - db_now).total_seconds()
    if abs(skew) > tolerance:
        yield Finding(
            "clocks",
            FAIL,
            f"this process's clock is {skew:+.1f} s off the database's",
            "synchronise the machines' clocks (NTP): leases and lags depend on them",
        )
    else:
        yield Finding("clocks", OK, f"this process and the database agree ({skew:+.2f} s)")
    # A lease runs LEASE_TIMEOUT from its renewal: one further ahead was set by a clock
    # that runs ahead.
    ahead = (
        AgentRun.objects.filter(
            status=RunStatus.RUNNING,
            lease_expires_at__gt=db_now
            + timedelta(seconds=ds_settings.LEASE_TIMEOUT + options.skew_tolerance),
        )
        .values_list("worker", flat=True)
        .distinct()
    )
    for worker in ahead:
        yield Finding(
            "clocks",
            FAIL,
            f"worker {worker} sets leases ahead of the database's clock",
            "synchronise that machine's clock (NTP)",
        )


def check_logs(options: Options) -> Iterator[Finding]:
    """The most recently active sessions: seq 1 … last_seq, each once (a compacted
    reply's ``message.snapshot`` stands for the seqs from its ``from_seq``)."""
    from_seq = Cast(KeyTextTransform("from_seq", "events__payload"), BigIntegerField())
    recent = (
        DurableSession.objects.order_by("-updated_at")
        .annotate(
            n_events=Count("events"),
            top=Max("events__seq"),
            folded=Sum(F("events__seq") - from_seq, filter=Q(events__type=wire.MESSAGE_SNAPSHOT)),
        )
        .values_list("id", "last_seq", "n_events", "top", "folded")[: options.recent_sessions]
    )
    broken = [
        str(sid)
        for sid, last, n, top, folded in recent
        if n + (folded or 0) != last or (top or 0) != last
    ]
    if broken:
        yield Finding(
            "event log",
            FAIL,
            f"{len(broken)} session(s) whose seqs are not 1…last_seq: {', '.join(broken[:5])}",
            "something wrote events outside the service: find it; clients of these "
            "sessions may miss events",
        )
    else:
        yield Finding("event log", OK, f"the {len(recent)} most recent sessions' logs are gapless")


def check_runs(options: Options) -> Iterator[Finding]:
    now = timezone.now()
    grace = timedelta(seconds=max(ds_settings.RUN_SWEEP_INTERVAL * 3, 10))
    unreaped = AgentRun.objects.filter(status=RunStatus.RUNNING, lease_expires_at__lt=now - grace)
    count = unreaped.count()
    if count:
        run_id, worker = unreaped.order_by("lease_expires_at").values_list("pk", "worker")[0]
        yield Finding(
            "runs",
            FAIL,
            f"{count} running run(s) whose lease expired long ago and nobody reaped "
            f"(e.g. run {run_id} of worker {worker})",
            "no worker is sweeping: start run_agents workers (RUNNER='worker') or check "
            "that the servers' embedded worker started (check W008)",
        )
    waiting = AgentRun.objects.filter(
        status=RunStatus.PENDING, created_at__lt=now - timedelta(seconds=options.stuck_after)
    ).count()
    if waiting:
        yield Finding(
            "runs",
            FAIL,
            f"{waiting} run(s) pending for more than {options.stuck_after:g} s",
            "no worker claims runs: start workers, or raise MAX_CONCURRENT_RUNS",
        )
    if not count and not waiting:
        yield Finding("runs", OK, "no stuck run")


def check_claims(options: Options) -> Iterator[Finding]:
    held = DurableSession.objects.filter(status=Status.OPEN, control=Control.HUMAN)
    orphans = held.filter(assigned_operator__isnull=True).count()
    orphans += held.filter(assigned_operator__is_active=False).count()
    if orphans:
        yield Finding(
            "claims",
            FAIL,
            f"{orphans} open session(s) held by no operator or by a deactivated one",
            "transfer them from the console, or hand them back to the AI",
        )
    # Since the session was last queued: an earlier stay in the queue does not count.
    waiting = (
        DurableSession.objects.filter(status=Status.OPEN, control=Control.QUEUED)
        .annotate(
            queued_at=Max(
                "handoff_records__created_at",
                filter=Q(handoff_records__to_control=Control.QUEUED),
            )
        )
        .filter(queued_at__lt=timezone.now() - timedelta(seconds=options.queue_warn))
        .count()
    )
    if waiting:
        yield Finding(
            "claims",
            WARN,
            f"{waiting} session(s) queued for a human for more than {options.queue_warn:g} s",
            "staff the console, or alert on ds_queue_oldest_wait_seconds",
        )
    if not orphans and not waiting:
        yield Finding("claims", OK, "every held session has an active operator")


CHECKS = {
    "settings": check_settings,
    "database": check_database,
    "channel layer": check_channel_layer,
    "clocks": check_clocks,
    "event log": check_logs,
    "runs": check_runs,
    "claims": check_claims,
}


def diagnose(options: Options) -> list[Finding]:
    """Every check; a check that fails to run is itself a finding."""
    findings: list[Finding] = []
    for area, check in CHECKS.items():
        try:
            findings += list(check(options))
        except Exception as exc:
            findings.append(Finding(area, FAIL, f"the check failed: {_describe(exc)}"))
    return findings


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
