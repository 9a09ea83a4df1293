"""The live workers, and each one's fair share of the runs.

Every worker notes itself at each sweep (:class:`~durable_sessions.models.AgentWorker`);
one not seen for ``LEASE_TIMEOUT`` is gone, one that is stopping (draining) claims
nothing. A worker claims a run only while it holds fewer than its share, the runs in
flight (this one included) divided among the live workers, and fewer than
``MAX_CONCURRENT_RUNS``: the runs of a burst spread over the workers, so one crash does
not take every reply down.
"""

from __future__ import annotations

import math
from datetime import timedelta

from django.utils import timezone

from durable_sessions.app_settings import ds_settings
from durable_sessions.models import AgentRun, AgentWorker, RunStatus


def seen(name: str, *, draining: bool = False) -> None:
    """Note that ``name`` is alive (and whether it is stopping)."""
    AgentWorker.objects.update_or_create(
        name=name[:100], defaults={"seen_at": timezone.now(), "draining": draining}
    )


def gone(name: str) -> None:
    """``name`` stopped: it no longer counts among the live workers."""
    AgentWorker.objects.filter(name=name[:100]).delete()


def live_count() -> int:
    since = timezone.now() - timedelta(seconds=ds_settings.LEASE_TIMEOUT)
    return AgentWorker.objects.filter(seen_at__gte=since, draining=False).count()


def share(running: int, live: int) -> int:
    """A worker's share when ``running`` runs are in flight among ``live`` workers, the
    run about to be claimed included."""
    return max(1, math.ceil((running + 1) / max(live, 1)))


def room(name: str) -> int:
    """How many more runs ``name`` may claim now (0 while it is stopping)."""
    if AgentWorker.objects.filter(name=name[:100], draining=True).exists():
        return 0
    running = AgentRun.objects.filter(status=RunStatus.RUNNING)
    mine = running.filter(worker=name).count()
    fair = share(running.count(), live_count())
    return max(0, min(ds_settings.MAX_CONCURRENT_RUNS, fair) - mine)


def has_room(name: str) -> bool:
    """Whether ``name`` may claim one more run now."""
    return room(name) > 0
