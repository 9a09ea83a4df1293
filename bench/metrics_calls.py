"""CPU time of the metrics' recording calls on the durable path, in a process of its own.

``python -m bench.metrics_calls`` prints JSON: microseconds of CPU (``time.process_time``)
per call, with metrics on in the mode the environment selects (multiprocess mode when
``PROMETHEUS_MULTIPROC_DIR`` is set). CPU time, unlike a rate, barely depends on what
else the machine runs, so this is the stable part of the metrics' cost.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

CALLS = 20_000


def per_call(fn: Callable[[], object]) -> float:
    """Microseconds of CPU per call of ``fn`` (the best of three rounds)."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(CALLS):
            fn()
        best = min(best, (time.process_time() - start) / CALLS * 1e6)
    return best


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.utils import timezone

    from durable_sessions import wire
    from durable_sessions.observability import metrics

    frames = [wire.frame(7, wire.MESSAGE_DELTA, {"message_id": 1, "text": "x"}, timezone.now())]

    def skipped() -> None:  # a delivery inside the sampling interval
        metrics._lag_sample.next_at = float("inf")
        metrics.delivered(frames)

    def observed() -> None:  # the delivery that is sampled
        metrics._lag_sample.next_at = 0.0
        metrics.delivered(frames)

    def group_commit() -> None:
        with metrics.timed_group_commit(3):
            pass

    print(
        json.dumps(
            {
                "multiprocess": bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")),
                "enabled": metrics.enabled(),
                "delivery_skipped_us": per_call(skipped),
                "delivery_observed_us": per_call(observed),
                "group_commit_us": per_call(group_commit),
                "samples_per_s": 1 / metrics.LAG_SAMPLE_INTERVAL,
            }
        )
    )


if __name__ == "__main__":
    main()
