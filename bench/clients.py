"""The runner's side of the load: client processes, writers, and one measured step."""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol

from bench.procs import Child, Server, Supervisor, cpu_seconds, machine_ticks
from bench.stats import latency_summary

CONNECT_CONCURRENCY = 20  # handshakes in flight per client process
DRAIN_S = 1.5  # after a stream ends, the clients get this long to receive the rest


class ClientPool:
    """Websocket clients spread over ``processes`` load-generator processes."""

    def __init__(self, sup: Supervisor, name: str, processes: int, env: dict[str, str]) -> None:
        self.children = [
            sup.module(f"{name}-clients-{i}", "bench.loadgen", env) for i in range(processes)
        ]
        self.count = 0

    def _all(self, command: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        for child in self.children:
            child.send(command)
        return [child.receive(timeout) for child in self.children]

    def connect(
        self,
        targets: list[tuple[str, str]],
        *,
        durable: bool,
        cookie: str | None = None,
        sse: bool = False,
    ) -> dict[str, Any]:
        """Open ``(url, key)`` targets round-robin over the processes (with ``sse``, AI
        SDK answer streams instead of websockets)."""
        shares: list[list[tuple[str, str]]] = [[] for _ in self.children]
        for target in targets:
            shares[self.count % len(self.children)].append(target)
            self.count += 1
        headers = {"Cookie": f"sessionid={cookie}"} if cookie else {}
        for child, share in zip(self.children, shares, strict=True):
            child.send(
                {
                    "cmd": "connect",
                    "targets": share,
                    "headers": headers,
                    "origin": None,  # the server's own: see loadgen._own_origin
                    "durable": durable,
                    "sse": sse,
                    "concurrency": CONNECT_CONCURRENCY,
                }
            )
        timeout = 120 + len(targets) / 20
        replies = [child.receive(timeout) for child in self.children]
        return {
            "connected": sum(r["connected"] for r in replies),
            "total": sum(r["total"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "errors": [e for r in replies for e in r["errors"]][:5],
            "seconds": max(r["seconds"] for r in replies),
        }

    def close(self) -> None:
        """Close every connection and end the client processes."""
        for child in self.children:
            child.request({"cmd": "close"}, 60)
            child.stop()

    def reset(self) -> None:
        self._all({"cmd": "reset"}, 30)

    def report(
        self, since: float, until: float, *, with_times: bool = False, per_key: bool = False
    ) -> dict[str, Any]:
        """What the clients saw of the deltas stamped in ``[since, until)``; with
        ``with_times``, each delivery's stamp too (in the order of ``latencies_ms``); with
        ``per_key``, the deliveries of each key."""
        command = {
            "cmd": "report",
            "since": since,
            "until": until,
            "with_times": with_times,
            "per_key": per_key,
        }
        replies = self._all(command, 60)
        lowest: dict[str, int] = {}
        delivered: dict[str, int] = {}
        for r in replies:
            for key, seq in r["last"].items():
                lowest[key] = min(lowest.get(key, seq), seq)
            for key, count in r.get("per_key", {}).items():
                delivered[key] = delivered.get(key, 0) + count
        return {
            "per_key": delivered,
            "latencies_ms": [x for r in replies for x in r["latencies_ms"]],
            "sent": [x for r in replies for x in r["sent"]],
            "gaps": sum(r["gaps"] for r in replies),
            "duplicates": sum(r["duplicates"] for r in replies),
            "last": lowest,
            "connections": sum(r["connections"] for r in replies),
            "ended": sum(r["ended"] for r in replies),
        }

    def resume(self, url: str, cookie: str, repeat: int) -> dict[str, Any]:
        """Time reconnections from the first client process."""
        command = {
            "cmd": "resume",
            "url": url,
            "repeat": repeat,
            "headers": {"Cookie": f"sessionid={cookie}"},
            "origin": None,  # the server's own: see loadgen._own_origin
        }
        return self.children[0].request(command, 60 + 30 * repeat)


class Writer(Protocol):
    """What sends the stamped deltas: a process, or the server itself (in-memory layer)."""

    def request(self, command: dict[str, Any], timeout: float) -> dict[str, Any]: ...


class HttpWriter:
    """The in-server writer of :mod:`bench.inproc`, driven over HTTP."""

    def __init__(self, server: Server) -> None:
        self.url = f"{server.origin}/bench/writer/"

    def request(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(command).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())


@dataclass(frozen=True)
class StepLoad:
    """One timed step: ``streams`` sessions streaming at ``rate_hz`` to ``devices`` each."""

    sessions: list[str]
    rate_hz: float
    devices: int
    warmup_s: float
    window_s: float


def warm_up(writer: Writer | Child, sessions: list[str], rate_hz: float, seconds: float) -> None:
    """An unmeasured stream: code paths, connection pools and caches warm before timing."""
    writer.request(
        {"cmd": "stream", "sessions": sessions, "rate_hz": rate_hz, "duration": seconds},
        timeout=120 + seconds,
    )
    time.sleep(1.0)


def stream_step(
    writer: Writer | Child,
    clients: ClientPool,
    load: StepLoad,
    watch: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Stream, let the clients drain, then collect what they saw within the window.

    ``watch`` names processes (server, writer) whose CPU time per delivery is reported.
    """
    clients.reset()
    watch = watch or {}
    cpu_before = {name: cpu_seconds(pid) for name, pid in watch.items()}
    busy_before, total_before = machine_ticks()
    duration = load.warmup_s + load.window_s
    wrote = writer.request(
        {
            "cmd": "stream",
            "sessions": load.sessions,
            "rate_hz": load.rate_hz,
            "duration": duration,
        },
        timeout=120 + duration,
    )
    time.sleep(DRAIN_S)  # anything later than this counts as missing
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in watch.items()}
    busy, total = machine_ticks()
    since = wrote["start"] + load.warmup_s
    seen = clients.report(since, wrote["end"])
    result = judge(wrote, seen, load, since)
    # CPU of the whole stream (warm-up included) over every delivery it made.
    deliveries = wrote["written"] * load.devices
    # Every CPU of the machine: servers, writers, clients, PostgreSQL, Redis (and others).
    result["machine_busy_pct"] = round(100.0 * (busy - busy_before) / max(total - total_before, 1))
    result["cpu_ms_per_delivery"] = {
        name: round(1000.0 * seconds / deliveries, 3) if deliveries else None
        for name, seconds in cpu.items()
    }
    return result


def missing_sessions(wrote: dict[str, Any], seen: dict[str, Any]) -> int:
    """Sessions where some connection had not received the last delta written."""
    return sum(1 for key, seq in wrote["final"].items() if seen["last"].get(key, -1) < seq)


def judge(
    wrote: dict[str, Any], seen: dict[str, Any], load: StepLoad, since: float
) -> dict[str, Any]:
    """The step's figures and whether it was sustained."""
    window = wrote["end"] - since
    latency = latency_summary(seen["latencies_ms"])
    offered = len(load.sessions) * load.rate_hz * load.devices
    written_rate = wrote["written"] / (wrote["end"] - wrote["start"])
    delivered = latency["n"] / window if window > 0 else 0.0
    missing = missing_sessions(wrote, seen)
    reasons = []
    if wrote["errors"]:
        reasons.append("writer errors: " + "; ".join(wrote["errors"][:2]))
    if wrote["skipped"] or written_rate < 0.95 * len(load.sessions) * load.rate_hz:
        reasons.append(f"writer fell behind ({wrote['skipped']} deltas skipped)")
    if seen["gaps"] or seen["duplicates"]:
        reasons.append(f"{seen['gaps']} gaps, {seen['duplicates']} duplicates")
    if missing:
        reasons.append(f"{missing} sessions missing their last delta")
    if delivered < 0.95 * offered:
        reasons.append(f"delivered {delivered:.0f}/s of {offered:.0f}/s")
    if latency["p99"] is None or latency["p99"] > 100:
        reasons.append(f"p99 {latency['p99']} ms > 100 ms")
    return {
        "streams": len(load.sessions),
        "offered_per_s": round(offered, 1),
        "written_per_s": round(written_rate, 1),
        "delivered_per_s": round(delivered, 1),
        "latency_ms": latency,
        "gaps": seen["gaps"],
        "duplicates": seen["duplicates"],
        "missing_sessions": missing,
        "connections_ended": seen["ended"],
        "sustained": not reasons,
        "why_not": reasons,
    }
