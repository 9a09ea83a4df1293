"""Agent runs: pending -> running (one worker, under a lease) -> finished.

These are service writes like any other: a run is created in the transaction of the
message that triggers it, a claim takes the session's lock (one session never has two
running runs), and the lease is renewed and the run finished only by its worker.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import F, Q, Value
from django.utils import timezone

from durable_sessions import signals
from durable_sessions.app_settings import ds_settings
from durable_sessions.models import (
    AgentRun,
    Control,
    Message,
    MessagePart,
    MessageState,
    PartState,
    PartType,
    Role,
    RunStatus,
    Status,
)
from durable_sessions.service import workers
from durable_sessions.service.text import current_content
from durable_sessions.service.unit import SessionWrite, send_signal, session_write

# Runs that a move away from the AI cancels (a suspended one too: its call is dropped).
ACTIVE = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.AWAITING)


def lease_until() -> datetime:
    return timezone.now() + timedelta(seconds=ds_settings.LEASE_TIMEOUT)


def start_pending(w: SessionWrite, trigger: Message, *, regenerates: Message | None = None) -> None:
    """A new pending run for ``trigger``, announced with the unit, unless one is already
    pending (it will read the newer history); ``regenerates``: the answer whose new
    version the run writes."""

    def create() -> None:
        if AgentRun.objects.filter(session_id=w.session_id, status=RunStatus.PENDING).exists():
            return
        run = AgentRun.objects.create(
            session_id=w.session_id, trigger=trigger, regenerates=regenerates
        )
        w.announce_run(run.pk)
        # Behind a run that waits for an approval, the agent still waits: it starts thinking
        # about this message once that run ends.
        if not AgentRun.objects.filter(session_id=w.session_id, status=RunStatus.AWAITING).exists():
            w.ephemeral(agent_status_frame("thinking", run.pk))

    w.after_rows(create)  # the run points to the message, saved with the unit


def agent_status_frame(
    status: str, run_id: int | None = None, *, tool: str | None = None
) -> dict[str, object]:
    """The ephemeral frame clients get when the agent's status changes; ``tool`` names
    the tool being called (``calling_tool``) or waiting (``awaiting_approval``)."""
    frame: dict[str, object] = {"type": "agent.status", "status": status, "run_id": run_id}
    if tool is not None:
        frame["tool"] = tool
    return frame


def active_work(session_id: uuid.UUID) -> tuple[list[int], list[int]]:
    """In one query: the session's pending and running runs, and its streaming replies
    (ids)."""
    run_rows = (
        AgentRun.objects.filter(session_id=session_id, status__in=ACTIVE)
        .annotate(kind=Value("run"))
        .order_by()  # a part of a UNION has no ORDER BY
        .values_list("kind", "pk")
    )
    reply_rows = (
        Message.objects.filter(
            session_id=session_id, role=Role.ASSISTANT, state=MessageState.STREAMING
        )
        .annotate(kind=Value("reply"))
        .order_by()
        .values_list("kind", "pk")
    )
    run_ids: list[int] = []
    replies: list[int] = []
    # No ORDER BY on the union either: Django 6.1 would order it by AgentRun's Meta
    # ordering, whose columns the combined rows do not have.
    for kind, pk in run_rows.union(reply_rows, all=True).order_by():
        if kind == "run":
            run_ids.append(pk)
        else:
            replies.append(pk)
    return sorted(run_ids), sorted(replies)


def cancel(run_ids: list[int], reason: str) -> None:
    AgentRun.objects.filter(pk__in=run_ids).update(
        status=RunStatus.CANCELLED, finished_at=timezone.now(), error=reason
    )


def claim(run_id: int, worker: str, *, fair: bool = False) -> AgentRun | None:
    """Atomically move a pending run to running for ``worker``; None if it cannot run now.

    A run whose session left AI control (or closed) is cancelled; a run whose session
    already has a running run stays pending until that one ends. With ``fair``, a worker
    that holds its share of the live workers' runs leaves the run to another one.
    """
    session_id = session_of(run_id, status=RunStatus.PENDING)
    if session_id is None:
        return None
    if fair and not workers.has_room(worker):
        return None
    with session_write(session_id) as w:
        pending = AgentRun.objects.filter(pk=run_id, status=RunStatus.PENDING)
        if w.status != Status.OPEN or w.control != Control.AI:
            pending.update(
                status=RunStatus.CANCELLED,
                finished_at=timezone.now(),
                error="the AI no longer controls the session",
            )
            return None
        # One run at a time, a suspended one included; an older pending run (a reply
        # continued after its approval) goes first.
        if (
            AgentRun.objects.filter(session_id=session_id)
            .filter(
                Q(status__in=(RunStatus.RUNNING, RunStatus.AWAITING))
                | Q(status=RunStatus.PENDING, pk__lt=run_id)
            )
            .exists()
        ):
            return None
        now = timezone.now()
        if not pending.update(
            status=RunStatus.RUNNING,
            worker=worker,
            started_at=now,
            lease_expires_at=lease_until(),
            attempts=F("attempts") + 1,
            retry_reason="",
        ):
            return None
        return AgentRun.objects.get(pk=run_id)


def renew_lease(run_id: int, worker: str) -> bool:
    """Extend the lease; False when the run is no longer this worker's running run."""
    return bool(
        AgentRun.objects.filter(pk=run_id, status=RunStatus.RUNNING, worker=worker).update(
            lease_expires_at=lease_until()
        )
    )


def attach_message(run_id: int, message_id: int) -> None:
    """Note the reply a run writes (the agent's status becomes "streaming")."""
    AgentRun.objects.filter(pk=run_id).update(message_id=message_id)


def finish(run_id: int, worker: str, status: str, error: str = "") -> bool:
    """End a running run; False if it had already ended (cancelled or reaped)."""
    ended = AgentRun.objects.filter(pk=run_id, status=RunStatus.RUNNING, worker=worker).update(
        status=status, finished_at=timezone.now(), error=error[:2000]
    )
    if ended and status == RunStatus.FAILED:
        session_id = session_of(run_id)
        kwargs = {"run_id": run_id, "error": error[:2000]}
        transaction.on_commit(partial(send_signal, signals.run_failed, session_id, kwargs))
    return bool(ended)


# --- reads of the runtime -------------------------------------------------------------------


def session_of(run_id: int, *, status: str | None = None) -> uuid.UUID | None:
    """The session of a run (with ``status``, if given)."""
    runs = AgentRun.objects.filter(pk=run_id)
    if status is not None:
        runs = runs.filter(status=status)
    return runs.values_list("session_id", flat=True).first()


def is_running(run_id: int, worker: str) -> bool:
    """Whether ``run_id`` is still ``worker``'s running run."""
    return AgentRun.objects.filter(pk=run_id, status=RunStatus.RUNNING, worker=worker).exists()


def reply_length(message_id: int) -> int | None:
    """How many characters a reply holds (a retry's check that its append was committed)."""
    message = Message.objects.filter(pk=message_id).first()
    return None if message is None else len(current_content(message))


def streaming_reply(session_id: uuid.UUID) -> Message | None:
    """The session's streaming assistant reply, if one is open."""
    return Message.objects.filter(
        session_id=session_id, role=Role.ASSISTANT, state=MessageState.STREAMING
    ).first()


def regenerated_group(session_id: uuid.UUID) -> int | None:
    """When the session's running run regenerates an answer: that answer's sibling group
    (the reply it opens is a new version in it)."""
    row = (
        AgentRun.objects.filter(
            session_id=session_id, status=RunStatus.RUNNING, regenerates__isnull=False
        )
        .values_list("regenerates_id", "regenerates__version_of_id")
        .first()
    )
    return None if row is None else (row[1] or row[0])


def answered_by_running(session_id: uuid.UUID) -> dict[str, Any]:
    """The session's running run and the customer's messages its reply answers: the run's
    trigger and the messages folded into it (sent while it was pending, or steered into
    it), up to the trigger of the next run. Empty when no run is running (a reply written
    through the Python API)."""
    run = (
        AgentRun.objects.filter(session_id=session_id, status=RunStatus.RUNNING)
        .values("pk", "trigger_id", "trigger__seq")
        .first()
    )
    if run is None:
        return {}
    answers: list[int] = []
    if run["trigger_id"] is not None:
        after = AgentRun.objects.filter(
            session_id=session_id, pk__gt=run["pk"], trigger__isnull=False
        ).order_by("pk")
        limit = after.values_list("trigger__seq", flat=True).first()
        rows = Message.objects.filter(
            session_id=session_id,
            role=Role.USER,
            hidden_under__isnull=True,
            seq__gte=run["trigger__seq"],
        )
        if limit is not None:
            rows = rows.filter(seq__lt=limit)
        answers = list(rows.order_by("seq").values_list("pk", flat=True))
        if run["trigger_id"] not in answers:  # a regeneration's question, for one
            answers.insert(0, run["trigger_id"])
    return {"run_id": run["pk"], "answers": answers}


def pending_ids(limit: int, *, waited: float = 0.0) -> list[int]:
    """The oldest pending runs; with ``waited``, only those created that many seconds ago
    or more (or waiting for another worker after an attempt)."""
    pending = AgentRun.objects.filter(status=RunStatus.PENDING)
    if waited:
        since = timezone.now() - timedelta(seconds=waited)
        pending = pending.filter(Q(created_at__lte=since) | ~Q(retry_reason=""))
    return list(pending.order_by("id").values_list("pk", flat=True)[:limit])


def next_pending_in_session(session_id: uuid.UUID) -> int | None:
    """The session's next run: a pending one, or one a sweep claimed already (the agent
    goes on thinking about it either way)."""
    return (
        AgentRun.objects.filter(
            session_id=session_id, status__in=(RunStatus.PENDING, RunStatus.RUNNING)
        )
        .order_by("id")
        .values_list("pk", flat=True)
        .first()
    )


def expired_ids(limit: int = 100) -> list[int]:
    return list(
        AgentRun.objects.filter(status=RunStatus.RUNNING, lease_expires_at__lt=timezone.now())
        .order_by("lease_expires_at")
        .values_list("pk", flat=True)[:limit]
    )


def agent_status(session_id: uuid.UUID) -> str:
    """What clients show for the agent: thinking, streaming, calling_tool,
    awaiting_approval, reconnecting, unresponsive or idle."""
    return str(agent_state(session_id)["status"])


def agent_state(session_id: uuid.UUID) -> dict[str, Any]:
    """The agent's status as the ``agent`` of a snapshot: ``{"status", "tool", "run_id"}``,
    from the
    session's newest run (a suspended run first) and its reply's last part."""
    runs = AgentRun.objects.filter(session_id=session_id).only(
        "status", "message_id", "retry_reason"
    )
    run = runs.filter(status=RunStatus.AWAITING).first() or runs.order_by("-id").first()
    if run is None:
        return {"status": "idle", "tool": None, "run_id": None}
    status = status_of_run(run.status, run.message_id, run.retry_reason)
    tool = None
    if run.status == RunStatus.RUNNING and run.message_id:
        reply_state = Message.objects.filter(pk=run.message_id).values_list("state", flat=True)
        if reply_state.first() != MessageState.STREAMING:
            # Its reply ended and the run is about to: what clients see next is idle.
            return {"status": "idle", "tool": None, "run_id": run.pk}
    if run.status in (RunStatus.RUNNING, RunStatus.AWAITING) and run.message_id:
        last = (
            MessagePart.objects.filter(message_id=run.message_id)
            .order_by("-index")
            .values_list("type", "state", "tool_name")
            .first()
        )
        waiting = (
            MessagePart.objects.filter(message_id=run.message_id, state=PartState.AWAITING_APPROVAL)
            .values_list("tool_name", flat=True)
            .first()
        )
        if run.status == RunStatus.AWAITING:
            tool = waiting
        elif last is not None and last[0] == PartType.TOOL_CALL and last[1] == PartState.RUNNING:
            status, tool = "calling_tool", last[2]
        elif last is not None and last[0] == PartType.REASONING:
            status = "thinking"
    return {"status": status, "tool": tool, "run_id": run.pk}


def latest_run(session_id: uuid.UUID) -> dict[str, Any] | None:
    """The session's newest run as the API shows it: its status and attempts."""
    run = (
        AgentRun.objects.filter(session_id=session_id)
        .order_by("-id")
        .values("id", "status", "attempts", "crashes", "created_at", "finished_at")
        .first()
    )
    if run is None:
        return None
    return {**run, "max_attempts": ds_settings.RUN_MAX_ATTEMPTS}


def status_of_run(status: str, message_id: int | None, retry_reason: str = "") -> str:
    """The agent status a session's latest run means (queue views compute it in bulk);
    a run pending again because its worker was lost is "reconnecting"."""
    if status == RunStatus.PENDING:
        return "reconnecting" if retry_reason else "thinking"
    if status == RunStatus.RUNNING:
        return "streaming" if message_id else "thinking"
    if status == RunStatus.CRASHED:
        return "unresponsive"
    if status == RunStatus.AWAITING:
        return "awaiting_approval"
    return "idle"
