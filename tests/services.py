"""Skip-or-fail for tests that need PostgreSQL, Redis or Chromium.

Without DS_REQUIRE_SERVICES=1 a missing service skips the test with a reason; with it
(CI) the test fails instead, so that CI can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
from urllib.parse import urlsplit

import pytest

REQUIRE = os.environ.get("DS_REQUIRE_SERVICES") == "1"


def missing(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"DS_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def require_postgres() -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        missing("PostgreSQL is not configured (set DATABASE_URL=postgres://...)")


def require_redis() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        missing("Redis is not configured (set REDIS_URL=redis://...)")
    if not _reachable(url, 6379):
        missing(f"Redis at {url} is not reachable")
    return url


CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def require_chromium() -> str:
    for path in CHROMIUM_PATHS:
        if os.path.exists(path):
            return path
    found = shutil.which("chromium")
    if found:
        return found
    missing("Chromium is not installed (apt-get install chromium)")
    raise AssertionError("unreachable")


NODE_MODULES = os.path.join(os.path.dirname(__file__), "node_modules")


def require_node_packages() -> str:
    """The ``node`` executable, once ``npm ci --prefix tests`` has installed the Node
    packages of tests/package.json (the Durable Streams suite, client and server)."""
    node = shutil.which("node")
    if node is None:
        missing("Node.js is not installed")
    marker = os.path.join(NODE_MODULES, "@durable-streams", "server-conformance-tests")
    if not os.path.isdir(marker):
        missing("the Node packages are not installed (npm ci --prefix tests)")
    return node  # type: ignore[return-value]


def require_axe() -> str:
    """The path of axe-core's script, once ``npm ci --prefix tests`` has installed the Node
    packages of tests/package.json."""
    path = os.path.join(NODE_MODULES, "axe-core", "axe.min.js")
    if not os.path.exists(path):
        missing("axe-core is not installed (npm ci --prefix tests)")
    return path
