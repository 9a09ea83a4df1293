"""The text a Prometheus scrape gets: this process's metrics, or with
``PROMETHEUS_MULTIPROC_DIR`` those of every process, then the database-backed gauges."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from pathlib import Path

from durable_sessions.app_settings import ds_settings, metrics_networks
from durable_sessions.observability import metrics
from durable_sessions.observability.state import collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LIVE_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db$")


def multiprocess_dir() -> str | None:
    """The shared directory of multiprocess mode, when it is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


def _forget_dead_processes(directory: str) -> None:
    """Drop the live gauges (open connections, presence) of processes that are gone.

    A killed server never says goodbye; without this its connections would be counted
    for ever. Processes of one machine share a directory, so a pid that does not exist
    here is dead.
    """
    from prometheus_client import multiprocess

    for path in Path(directory).glob("gauge_live*.db"):
        match = _LIVE_FILE.search(path.name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)
        except PermissionError:  # alive, another user's
            pass


_state_registry = None


def render() -> bytes:
    """The exposition text; raises RuntimeError without prometheus_client."""
    if not metrics.AVAILABLE:
        raise RuntimeError("prometheus_client is not installed")
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess

    global _state_registry
    directory = multiprocess_dir()
    if directory:
        _forget_dead_processes(directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, directory)
    else:
        registry = REGISTRY
    if _state_registry is None:
        _state_registry = CollectorRegistry(auto_describe=False)
        _state_registry.register(collector)
    return generate_latest(registry) + generate_latest(_state_registry)


def scraper_allowed(authorization: str, remote_addr: str) -> bool:
    """A valid ``Bearer <METRICS_TOKEN>``, or an address in ``METRICS_ALLOWED_IPS``."""
    token = ds_settings.METRICS_TOKEN
    if token and authorization.startswith("Bearer "):
        given = authorization.removeprefix("Bearer ").strip()
        # surrogatepass: a header may hold any code point, and must not fail the compare.
        return secrets.compare_digest(
            given.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass")
        )
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    return any(address in network for network in metrics_networks())
