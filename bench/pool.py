"""The sessions the benchmarks stream to, made and read by the runner itself.

The runner sets Django up on the benchmark database (with the in-memory layer: nothing
is listening while it creates sessions). Sessions are kept between runs: a pool of
sessions owned by one anonymous visitor, and one session per resume size.
"""

from __future__ import annotations

import math
import os

from bench.plan import DEVICES, Plan

POOL_TITLE = "bench-pool"
RESUME_TITLE = "bench-resume-{events}"


def setup_django() -> None:
    """Configure Django in the runner, on the benchmark database."""
    from bench.config import process_env

    os.environ.update(process_env(layer="memory"))
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()


def cookie() -> str:
    """A Django session (the ``sessionid`` cookie) of the pool's visitor."""
    from django.contrib.sessions.backends.db import SessionStore

    from bench.config import VISITOR
    from durable_sessions.adapter import VISITOR_KEY

    store = SessionStore()
    store[VISITOR_KEY] = VISITOR
    store.save()
    assert store.session_key is not None
    return store.session_key


def sessions(count: int, title: str = POOL_TITLE) -> list[str]:
    """Ids of ``count`` open, AI-controlled sessions called ``title`` (made when missing)."""
    from bench.config import VISITOR
    from durable_sessions import service
    from durable_sessions.models import Control, DurableSession, Status

    found = [
        str(pk)
        for pk in DurableSession.objects.filter(
            title=title, owner_visitor=VISITOR, status=Status.OPEN, control=Control.AI
        )
        .order_by("created_at", "id")
        .values_list("id", flat=True)[:count]
    ]
    while len(found) < count:
        found.append(str(service.create_session(visitor=VISITOR, title=title).id))
    return found


def needed(plan: Plan) -> int:
    """Pool sessions the largest measurement of ``plan`` streams to."""
    return max(
        plan.overhead_max_streams,
        math.ceil(max(plan.latency_clients) / DEVICES),
        math.ceil(max(plan.connection_steps) / DEVICES),
    )


def finish_open_replies() -> int:
    """Complete replies left streaming by an interrupted run: a real deployment only has
    the replies being written right now open (and some statements scan them all)."""
    from bench.config import VISITOR
    from durable_sessions import service
    from durable_sessions.models import Message, MessageState, Role

    open_ids = list(
        Message.objects.filter(
            session__owner_visitor=VISITOR, role=Role.ASSISTANT, state=MessageState.STREAMING
        ).values_list("pk", flat=True)
    )
    for message_id in open_ids:
        service.finish_assistant_message(message_id)
    return len(open_ids)


def last_seqs(ids: list[str]) -> dict[str, int]:
    """``last_seq`` of each session: clients connect with it as ``after_seq``."""
    from durable_sessions.delivery.replay import latest_seqs

    found: dict[str, int] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        found.update({str(k): v for k, v in latest_seqs(chunk).items()})  # type: ignore[arg-type]
    return found


def resume_session(events: int) -> tuple[str, bool]:
    """The session to resume, and whether it already holds ``events`` events."""
    from bench.config import VISITOR
    from durable_sessions import service
    from durable_sessions.models import DurableSession

    title = RESUME_TITLE.format(events=events)
    existing = (
        DurableSession.objects.filter(title=title, owner_visitor=VISITOR, last_seq=events)
        .values_list("id", flat=True)
        .first()
    )
    if existing is not None:
        return str(existing), True
    return str(service.create_session(visitor=VISITOR, title=title).id), False
