"""Small helpers that turn environment variables into Django settings."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.management.utils import get_random_secret_key

logger = logging.getLogger(__name__)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def database_from_url(url: str | None, sqlite_path: Path) -> dict[str, Any]:
    """Return a DATABASES entry: SQLite at ``sqlite_path`` or PostgreSQL from a URL."""
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": sqlite_path,
            # IMMEDIATE takes the write lock at BEGIN, so concurrent writers queue up
            # (up to "timeout" seconds) instead of failing with "database is locked".
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file (not memory) so that server processes started by tests can share it;
            # named per process so that concurrent test runs never share one.
            "TEST": {
                "NAME": str(sqlite_path.with_name(f"{sqlite_path.stem}-test-{os.getpid()}.sqlite3"))
            },
        }
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ValueError(f"DATABASE_URL: unsupported scheme {parts.scheme!r} (use postgres://)")
    options: dict[str, Any] = dict(parse_qsl(parts.query))
    # Under ASGI each database_sync_to_async call ends by closing its connection
    # (CONN_MAX_AGE must be 0 there): without a pool every call would open a new one.
    if os.environ.get("DATABASE_POOL", "1") != "0":
        options["pool"] = {
            "min_size": int(os.environ.get("DATABASE_POOL_MIN", "2")),
            "max_size": int(os.environ.get("DATABASE_POOL_MAX", "20")),
            "timeout": 10,
        }
    return {
        "ENGINE": "django.db.backends.postgresql",
        # Checks a pooled connection before it is lent (psycopg's check_connection): after
        # a PostgreSQL restart the pool would otherwise hand out dead ones.
        "CONN_HEALTH_CHECKS": True,
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        # Under ASGI every request may run in a different thread: Django's docs advise
        # against persistent connections there.
        "CONN_MAX_AGE": 0,
        "OPTIONS": options,
        # Per process, so that concurrent test runs on one server never share a database.
        "TEST": {"NAME": f"test_{unquote(parts.path.lstrip('/')) or 'postgres'}_{os.getpid()}"},
    }


def channel_layers_from_url(url: str | None) -> dict[str, Any]:
    """The one-process in-memory layer without REDIS_URL; channels-redis with it."""
    if not url:
        return {"default": {"BACKEND": "durable_sessions.delivery.layers.LocalChannelLayer"}}
    # redis-py 8 caps a pool at 100 connections and raises past it, and its default
    # socket timeout equals channels-redis' 5 s blocking read: set both explicitly.
    host = {
        "address": url,
        "max_connections": int(os.environ.get("REDIS_MAX_CONNECTIONS", "1000")),
        "socket_timeout": float(os.environ.get("REDIS_SOCKET_TIMEOUT", "30")),
        "socket_connect_timeout": 5,
        "health_check_interval": 30,
    }
    kind = os.environ.get("REDIS_LAYER", "pubsub")
    if kind == "pubsub":
        # The pub/sub layer never drops on overload (the core layer drops silently past
        # its capacity); the app does not rely on either for delivery.
        return {
            "default": {
                "BACKEND": "durable_sessions.delivery.layers.RedisPubSubLayer",
                "CONFIG": {"hosts": [host]},
            }
        }
    if kind == "core":
        return {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [host],
                    # Messages queued per channel before it drops (a process's consumers share one).
                    "capacity": int(os.environ.get("REDIS_CAPACITY", "1000")),
                    "expiry": 30,
                },
            }
        }
    raise ValueError(f"REDIS_LAYER must be 'pubsub' or 'core', not {kind!r}")


def local_secret_key(path: Path) -> str:
    """The secret key kept in ``path``, made (random, readable by its owner only) if new.

    One key per checkout, never one published with the source. Processes of one checkout
    share it; machines that share sessions need the same SECRET_KEY in the environment.
    """
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = get_random_secret_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(key + "\n")
    logger.warning("SECRET_KEY is not set: made a random one in %s", path)
    return key


def cache_from_url(url: str | None) -> dict[str, Any]:
    """Django's Redis cache with REDIS_URL (shared by processes); memory without it."""
    if not url:
        return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "demo",
        }
    }
