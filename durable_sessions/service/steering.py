"""How a customer's message reaches an agent that is busy: queued, steering or interrupting.

``queue`` (the default) leaves the message for a run after the current one. ``steer``
sends it into the running run: the run reads it at its next step boundary (a ``run.steered``
event in the log says when) and goes on with it in context, keeping what it already wrote.
``interrupt`` cancels the current answer (its partial text stays, marked cancelled with
the reason ``interrupted``) and starts a new run for the message. An agent that cannot read
steering messages gets them queued, and the sender is told which mode applied. A steering
message the run ends without reading is answered by a new run, as a queued one would be.
"""

from __future__ import annotations

from typing import Any

from durable_sessions import wire
from durable_sessions.app_settings import ds_settings
from durable_sessions.errors import InvalidInput
from durable_sessions.models import AgentRun, Control, DurableSession, Message, RunStatus, Status
from durable_sessions.service import runs
from durable_sessions.service.unit import SessionWrite, session_write

QUEUE = "queue"
STEER = "steer"
INTERRUPT = "interrupt"
MODES = (QUEUE, STEER, INTERRUPT)
# The reason a cancelled reply carries when a customer's message interrupted it.
INTERRUPTED = "interrupted"
# The session metadata key that holds a session's default mode.
METADATA_KEY = "send_mode"


def clean_mode(value: Any) -> str | None:
    """A requested mode, or None when the sender named none; :class:`InvalidInput` else."""
    if value is None:
        return None
    if not isinstance(value, str) or value not in MODES:
        raise InvalidInput("mode", f"must be one of {', '.join(MODES)}")
    return value


def agent_steers() -> bool:
    """Whether the configured agent reads steering messages (``Agent.supports_steering``)."""
    return bool(getattr(ds_settings.AGENT, "supports_steering", False))


def default_mode(session_id: Any) -> str:
    """The session's default mode (its metadata ``send_mode``), else ``DEFAULT_SEND_MODE``."""
    metadata = (
        DurableSession.objects.filter(pk=session_id).values_list("metadata", flat=True).first()
    )
    chosen = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    return chosen if chosen in MODES else ds_settings.DEFAULT_SEND_MODE


def choose(w: SessionWrite, requested: str | None) -> tuple[str, int | None]:
    """The mode that applies to a customer's message to the AI, and the run it steers.

    Returns ``("", None)`` when nothing was active (the message starts a run as always):
    a session without a busy agent pays one indexed query, and none when the sender asked
    for ``queue``."""
    if requested == QUEUE:
        return "", None
    active = (
        AgentRun.objects.filter(session_id=w.session_id, status__in=runs.ACTIVE)
        .order_by("-id")
        .values_list("pk", "status")
        .first()
    )
    if active is None:
        return "", None
    mode = requested or default_mode(w.session_id)
    if mode == INTERRUPT:
        return INTERRUPT, None
    if mode == STEER and active[1] == RunStatus.RUNNING and agent_steers():
        return STEER, active[0]
    return QUEUE, None  # asked to queue, or cannot steer: nothing runs, it waits, or no support


def applied(message: Message) -> str:
    """What the sender is told: the mode a message was taken with (``queue`` when no agent
    was busy)."""
    return message.send_mode or QUEUE


def take(run_id: int) -> list[Message]:
    """The steering messages sent into ``run_id`` that it has not read yet, marked read with
    a ``run.steered`` event; none when the run no longer runs."""
    session_id = runs.session_of(run_id, status=RunStatus.RUNNING)
    if session_id is None:
        return []
    with session_write(session_id) as w:
        run = AgentRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).first()
        if run is None or w.control != Control.AI or w.status != Status.OPEN:
            return []
        unread = list(
            Message.objects.select_related("author")
            .filter(steer_run_id=run_id, seq__gt=run.steered_seq)
            .order_by("seq")
        )
        if not unread:
            return []
        AgentRun.objects.filter(pk=run_id).update(steered_seq=unread[-1].seq)
        w.append(
            wire.RUN_STEERED,
            {
                "run_id": run_id,
                "reply_id": run.message_id,
                "message_ids": [m.pk for m in unread],
            },
        )
        return unread


def requeue_unread(run_id: int) -> bool:
    """After ``run_id`` ended: start a run for steering messages it never read (they are
    answered as queued ones would be). True when a run was started."""
    session_id = runs.session_of(run_id)
    if session_id is None:
        return False
    with session_write(session_id) as w:
        steered = AgentRun.objects.filter(pk=run_id).values_list("steered_seq", flat=True).first()
        unread = Message.objects.filter(steer_run_id=run_id, seq__gt=steered or 0)
        first = unread.order_by("seq").first()
        if first is None or w.control != Control.AI or w.status != Status.OPEN:
            return False
        runs.start_pending(w, first)
        return True
