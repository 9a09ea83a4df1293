"""Servers and targets the measurements share."""

from __future__ import annotations

from bench.config import process_env
from bench.plan import DEVICES
from bench.procs import Server, Supervisor

PROJECT_APP = "project.asgi:application"
INPROC_APP = "bench.inproc:application"
RELAY_APP = "bench.relay.asgi:application"


def durable_servers(
    sup: Supervisor,
    name: str,
    *,
    layer: str,
    processes: int,
    extra_env: dict[str, str] | None = None,
) -> tuple[list[Server], dict[str, str]]:
    """Daphne processes of the demo project (with the in-server writer on memory);
    ``extra_env`` is added to the environment of the servers and of what shares it."""
    env = {**process_env(layer=layer, processes=processes), **(extra_env or {})}
    app = INPROC_APP if layer == "memory" else PROJECT_APP
    servers = [sup.daphne(f"{name}-daphne-{i}", app, env) for i in range(processes)]
    return servers, env


def relay_server(sup: Supervisor, name: str) -> tuple[Server, dict[str, str]]:
    """One Daphne process of the bare relay, on the Redis layer."""
    env = process_env(layer="redis", settings_module="bench.relay.settings")
    return sup.daphne(f"{name}-daphne", RELAY_APP, env), env


def relay_servers(
    sup: Supervisor, name: str, processes: int
) -> tuple[list[Server], dict[str, str]]:
    """Daphne processes of the bare relay behind the Redis layer."""
    env = process_env(layer="redis", settings_module="bench.relay.settings")
    return [sup.daphne(f"{name}-daphne-{i}", RELAY_APP, env) for i in range(processes)], env


def durable_targets(
    servers: list[Server],
    sessions: list[str],
    after: dict[str, int],
    *,
    first: int,
    count: int,
) -> list[tuple[str, str]]:
    """Connections ``first``..``first + count - 1``: connection i follows session i // 3,
    and the devices of a session alternate between the servers."""
    targets = []
    for index in range(first, first + count):
        session = sessions[index // DEVICES]
        server = servers[index % len(servers)]
        url = f"{server.ws}/ws/sessions/{session}/?after_seq={after[session]}&batch=1"
        targets.append((url, session))
    return targets


def relay_targets(
    server: Server | list[Server], sessions: list[str], count: int
) -> list[tuple[str, str]]:
    """``count`` connections to the relay, three per stream key; with several servers
    the devices of a key alternate between them."""
    servers = server if isinstance(server, list) else [server]
    return [
        (
            f"{servers[i % len(servers)].ws}/ws/relay/{sessions[i // DEVICES]}/",
            sessions[i // DEVICES],
        )
        for i in range(count)
    ]


def fmt(value: float | None, digits: int = 0) -> str:
    """A number for a table cell; a dash for none."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"
