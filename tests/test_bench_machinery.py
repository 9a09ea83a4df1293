"""The benchmark's bookkeeping, without processes: set-ups measured in turn at each rate,
the ramp going on until every set-up has failed, goals decided by the median of runs, and
reports that render. Nothing is timed here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench import interleave, report
from bench.measure import Context, Goal, eventlog, overhead, scaleout
from bench.plan import QUICK, Plan


@dataclass
class FakeRig:
    """Sustains up to ``limit`` streams; records the order it was asked in."""

    label: str
    limit: int
    calls: list[tuple[str, int]]
    processes: int = 1
    connections: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)

    def step(self, ctx: Context, streams: int) -> dict[str, Any]:
        self.calls.append((self.label, streams))
        ok = streams <= self.limit
        result = {
            "streams": streams,
            "sustained": ok,
            "why_not": [] if ok else ["p99 too high"],
            "offered_per_s": streams * 75.0,
            "delivered_per_s": streams * 75.0,
            "latency_ms": {"p50": 1.0, "p99": 2.0},
            "cpu_ms_per_delivery": {"server0": 0.2, "writer": 0.1},
            "machine_busy_pct": 50,
            "load": {"loadavg": "1.00, 1.00, 1.00", "others_cpu_pct": 3.0},
            "order": len(self.calls),
        }
        self.steps.append(result)
        return result


def context(plan: Plan) -> Context:
    return Context(plan, "cookie", 0, lambda message: None)


def test_the_ramp_steps_every_setup_in_turn_until_the_last_one_fails():
    plan = Plan(**{**QUICK.as_dict(), "overhead_factor": 2.0, "overhead_bisect_steps": 2})
    calls: list[tuple[str, int]] = []
    durable, relay = FakeRig("durable", 20, calls), FakeRig("relay", 70, calls)
    result = interleave.ramp(context(plan), [durable, relay], max_streams=200)  # type: ignore[list-item]

    # At each rate: durable, then relay; a failure is tried again after the other.
    assert calls[:2] == [("durable", 12), ("relay", 12)]
    assert calls[2:5] == [("durable", 24), ("relay", 24), ("durable", 24)]
    # The rate went on rising after the durable path failed, until the relay failed too.
    assert max(s for label, s in calls if label == "relay") > 70
    assert not result["relay"]["capped"] and not result["durable"]["capped"]
    # Bisection narrows each boundary (and measures both set-ups at each middle).
    assert 12 < result["durable"]["sustainable_streams"] <= 20
    assert result["relay"]["sustainable_streams"] > 48
    rates = {s for _, s in calls}
    assert all({("durable", s), ("relay", s)} <= set(calls) for s in rates)


def test_a_setup_that_never_fails_is_reported_as_capped():
    plan = Plan(**{**QUICK.as_dict(), "overhead_factor": 2.0, "overhead_bisect_steps": 0})
    calls: list[tuple[str, int]] = []
    rigs = [FakeRig("durable", 10, calls), FakeRig("relay", 10_000, calls)]
    result = interleave.ramp(context(plan), rigs, max_streams=48)  # type: ignore[arg-type]
    assert result["relay"]["capped"] and not result["durable"]["capped"]
    # The durable path failed at the first rate: it was stepped down until it passed.
    assert result["durable"]["sustainable_streams"] == 6


def test_a_goal_is_decided_by_the_median_of_its_runs():
    goal = Goal(
        "ratio ≥ 0.8",
        ["0.7", "0.9", "1.1"],
        [False, True, True],
        [0.7, 1.1, 0.9],
        lambda r: r >= 0.8,
    )
    cell, met = report._median_cell(goal)
    assert cell == "**0.90** (0.70 to 1.10, 3 runs)" and met is True


def fake_side(limit: int) -> dict[str, Any]:
    rig = FakeRig("x", limit, [])
    for streams in (12, 24):
        rig.step(context(QUICK), streams)
    return interleave.summary(rig, capped=False)  # type: ignore[arg-type]


def test_the_reports_of_the_new_measurements_render():
    over = {"durable": fake_side(12), "relay": fake_side(24)}
    over["ratio"] = 0.5
    scale = {label: fake_side(12) for label in scaleout.LABELS}
    scale.update(durable_scale=1.8, relay_scale=1.9, overhead_1=0.9, overhead_2=0.8)
    size = {
        "events": 1000,
        "heap_bytes": 1,
        "index_bytes": 1,
        "total_bytes": 2,
        "bytes_per_event": 0.002,
    }
    steps = [{"table": "small", "per_second": 10.0, "load": {"loadavg": "1", "others_cpu_pct": 0}}]
    log = {"size": size, "steps": steps, "small_per_s": 10.0, "large_per_s": 9.0, "ratio": 0.9}
    results = {
        "meta": {
            "date": "today",
            "command": "python -m bench.run",
            "seconds": 1,
            "nproc": "2",
            "ram_gib": 1,
            "cpu": "cpu",
            "kernel": "k",
            "load_before": "1",
            "load_after": "1",
            "versions": {"Python": "3"},
        },
        "measurements": {
            name: {
                "date": "today",
                "plan": QUICK.as_dict(),
                "load": [["1", "1"]] * 3,
                "runs": [run] * 3,
                "errors": [],
            }
            for name, run in (("overhead", over), ("scaleout", scale), ("eventlog", log))
        },
    }
    modules = {m.NAME: m for m in (overhead, scaleout, eventlog)}
    text = report.render(results, modules)
    assert "**0.50** (3 runs)" in text  # three equal runs: no spread to show
    assert "| 1 | 1 | x |" not in text and "| durable | 12 |" in text
    assert "Scale-out" in text and "**1.80**" in text
    assert "The event table after many events" in text


def test_the_ai_sdk_measurement_is_registered_and_its_report_renders():
    from bench.measure import aisdk
    from bench.run import MEASUREMENTS

    assert MEASUREMENTS["aisdk"] is aisdk

    def path(delivered: int, p50: float, cpu: float) -> dict:
        return {
            "opened": 50,
            "open_s": 1.0,
            "target": 100,
            "written": 100,
            "writer_errors": [],
            "delivered": delivered,
            "per_second": delivered / 2,
            "starved": 0,
            "duplicates": 0,
            "gaps": 0,
            "latency_ms": {"n": delivered, "p50": p50, "p95": p50, "p99": 2 * p50, "max": 0},
            "server_cpu_ms_per_delta": cpu,
            "server_rss_mib": 120.0,
            "server_rss_before_mib": 119.0,
        }

    run = {
        "deltas": 2000,
        "resume": {"sse_ms": [120.0, 130.0], "ws_ms": [90.0, 95.0]},
        "streams": 50,
        "delivery": {"sse": path(98, 30.0, 0.5), "ws": path(100, 10.0, 0.25)},
    }
    text = aisdk.render([run], QUICK)
    assert "| 1 | 125.0 | 92.5 |" in text
    assert "| deltas delivered | 98 | 100 | 0.98 |" in text
    assert "| latency p50, ms | 30.0 | 10.0 | 3.00 |" in text
    assert "| server CPU per delivered delta, ms | 0.500 | 0.250 | 2.00 |" in text
    assert "2,000 deltas" in text and "50 concurrent streams" in text and aisdk.goals([run]) == []
    # A run recorded before the streams were measured renders its resume only.
    old = {**run, "delivery": {"sse": {"delivered": 0}, "ws": {"delivered": 0}}}
    assert "No run measured the streams." in aisdk.render([old], QUICK)


def test_the_answer_stream_client_reads_the_stamps_of_text_deltas_split_across_chunks():
    from bench.sse_client import AnswerStream

    stream = AnswerStream(reader=None, writer=None, chunked=True)  # type: ignore[arg-type]
    body = (
        b'data: {"type":"start","messageId":"7"}\n\n'
        b'data: {"type":"text-start","id":"7-0"}\n\n'
        b'data: {"type":"text-delta","id":"7-0","delta":"1700000000.250000 and the"}\n\n'
        b'data: {"type":"text-delta","id":"7-0","delta":"no stamp here"}\n\n'
        b'data: {"type":"text-delta","id":"7-0","delta":"1700000000.750000 order"}\n\n'
    )
    cut = body.index(b"0.750000") + 3  # a piece ends inside an event
    assert stream.stamps(body[:cut]) == [1700000000.25]
    assert stream.stamps(body[cut:]) == [1700000000.75]
    assert stream.pending == b""
