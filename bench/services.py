"""PostgreSQL databases and the Redis database of the benchmarks, made ready."""

from __future__ import annotations

import importlib.util
import subprocess

import psycopg
import redis
from psycopg import sql

from bench.config import (
    DATABASE,
    EVENTSTREAM_DATABASE,
    PYTHON,
    REDIS_URL,
    ROOT,
    database_url,
    process_env,
)


def ensure_database(name: str) -> bool:
    """Create database ``name`` unless it exists; True when it was created."""
    with psycopg.connect(database_url("postgres"), autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def migrate(settings_module: str, database: str) -> None:
    """``migrate`` one database with one settings module, in a child process."""
    env = process_env(layer="memory", settings_module=settings_module, database=database)
    subprocess.run(
        [PYTHON, "-m", "django", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )


def flush_redis() -> None:
    """Empty the benchmarks' Redis database (presence keys of earlier runs)."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


def analyze(*, vacuum: bool = False) -> None:
    """Refresh the planner's statistics of both databases (and vacuum them).

    The benchmarks write hundreds of thousands of rows; with autovacuum off (as on some
    test servers) the planner would go on planning for empty tables.
    """
    command = "VACUUM (ANALYZE)" if vacuum else "ANALYZE"
    for database in (DATABASE, EVENTSTREAM_DATABASE):
        try:
            conn = psycopg.connect(database_url(database), autocommit=True, connect_timeout=5)
        except psycopg.OperationalError:
            continue  # not made (no django-eventstream)
        with conn:
            conn.execute(command)


def prepare() -> None:
    """Both databases exist and are migrated; Redis is empty. Without django-eventstream
    (the ``[bench]`` extra) its database is left alone: only its comparison fails."""
    databases = [("project.settings", DATABASE)]
    if importlib.util.find_spec("django_eventstream") is not None:
        databases.append(("bench.eventstream.settings", EVENTSTREAM_DATABASE))
    for settings_module, database in databases:
        ensure_database(database)
        migrate(settings_module, database)
    flush_redis()
