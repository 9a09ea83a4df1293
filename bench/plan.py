"""How much load each measurement applies: the full plan and the ~1-minute smoke plan."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

DEVICES = 3  # connections per session: laptop, phone, another tab
RATE_HZ = 25.0  # one flushed delta every 40 ms per streaming reply


@dataclass(frozen=True)
class Plan:
    """Every load parameter, written to the report as-is."""

    name: str
    runs: int
    warmup_s: float
    window_s: float
    client_processes: int
    # 1. streaming overhead
    overhead_fixed_streams: int
    overhead_factor: float
    overhead_max_streams: int
    overhead_bisect_steps: int
    # 2. latency under load
    latency_clients: tuple[int, ...]
    latency_streams: int
    latency_setups: tuple[tuple[str, int], ...]
    # 3. resume
    resume_events: int
    resume_tail: int
    resume_repeats: int
    # 4. connections
    connection_steps: tuple[int, ...]
    broadcast_rate: float
    # 5. appends
    append_seconds: float
    append_sessions: tuple[int, ...]
    eventstream_threads: tuple[int, ...]
    # Runs of the measurements that decide a goal (overhead, scale-out, connections): the
    # goals table shows their median and spread.
    goal_runs: int = 3
    # 9. the event table after many events
    eventlog_events: int = 10_000_000
    eventlog_sessions: int = 10_000
    # 10. AI SDK endpoints: resume of one long answer; concurrent answer streams
    aisdk_resume_deltas: int = 2_000
    aisdk_streams: int = 1_000
    aisdk_rate_hz: float = 2.0
    aisdk_client_processes: int = 3  # the streams' clients, spread over these

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = Plan(
    name="full",
    runs=2,
    warmup_s=1.0,
    window_s=3.5,
    client_processes=2,
    overhead_fixed_streams=12,
    overhead_factor=1.5,
    overhead_max_streams=400,
    overhead_bisect_steps=2,
    latency_clients=(100, 300, 1000),
    latency_streams=12,
    latency_setups=(("memory", 1), ("redis", 1), ("redis", 2)),
    resume_events=10_000,
    resume_tail=100,
    resume_repeats=5,
    connection_steps=(1000, 2000, 5000),
    broadcast_rate=300.0,
    append_seconds=4.0,
    append_sessions=(200, 1000),
    eventstream_threads=(1, 8),
    goal_runs=3,
    eventlog_events=10_000_000,
    eventlog_sessions=10_000,
)

QUICK = Plan(
    name="quick",
    runs=1,
    warmup_s=0.5,
    window_s=1.0,
    client_processes=2,
    overhead_fixed_streams=12,
    overhead_factor=2.0,
    overhead_max_streams=24,
    overhead_bisect_steps=0,
    latency_clients=(100,),
    latency_streams=12,
    latency_setups=(("memory", 1), ("redis", 1)),
    resume_events=2_000,
    resume_tail=100,
    resume_repeats=2,
    connection_steps=(150,),
    broadcast_rate=300.0,
    append_seconds=1.5,
    append_sessions=(200,),
    eventstream_threads=(1,),
    goal_runs=1,
    eventlog_events=200_000,
    eventlog_sessions=1_000,
    aisdk_streams=50,
)
