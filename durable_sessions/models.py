"""The durable session, its participants, messages and the append-only event log.

Only ``durable_sessions.service`` writes these models; everything else reads them.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import JSONField, OuterRef, Q, Subquery
from django.db.models.functions import Substr
from django.utils import timezone
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _


class Control(models.TextChoices):
    """Who is answering the customer; kept apart from open/closed."""

    AI = "ai", _("AI agent")
    QUEUED = "queued", _("Waiting for a human")
    HUMAN = "human", _("Human operator")


class Status(models.TextChoices):
    OPEN = "open", pgettext_lazy("conversation status", "Open")
    CLOSED = "closed", pgettext_lazy("conversation status", "Closed")


class DurableSessionQuerySet(models.QuerySet):
    """The questions asked of many sessions at once: whose, and what happened last."""

    def owned_by(self, user: Any, visitor: str | None) -> DurableSessionQuerySet:
        """Sessions whose customer is ``user`` (when logged in) or the anonymous browser
        ``visitor``; none for somebody who is neither."""
        mine = Q()
        if user is not None and user.is_authenticated:
            mine |= Q(owner=user)
        if visitor:
            mine |= Q(owner__isnull=True, owner_visitor=visitor)
        return self.filter(mine) if mine else self.none()

    def with_last_message(self, preview_chars: int) -> DurableSessionQuerySet:
        """Annotate ``last_role``, ``last_preview`` (its first ``preview_chars`` characters)
        and ``last_at`` of each session's newest message, one subquery each."""
        # A streaming reply's text is in its deltas until it ends (service/text.py): the
        # preview is of the newest message with stored text.
        last = (
            Message.objects.filter(session=OuterRef("pk"))
            .exclude(content="", state=MessageState.STREAMING)
            .order_by("-seq")
        )
        return self.annotate(
            last_role=Subquery(last.values("role")[:1]),
            last_preview=Subquery(
                last.annotate(head=Substr("content", 1, preview_chars)).values("head")[:1]
            ),
            last_at=Subquery(last.values("created_at")[:1]),
        )

    def with_last_control(self) -> DurableSessionQuerySet:
        """Annotate ``control_payload`` and ``control_at`` of each session's newest
        ``control.changed`` event (for a queued session: the one that queued it)."""
        control = Event.objects.filter(session=OuterRef("pk"), type="control.changed").order_by(
            "-seq"
        )
        return self.annotate(
            control_payload=Subquery(control.values("payload")[:1], output_field=JSONField()),
            control_at=Subquery(control.values("created_at")[:1]),
        )

    def with_latest_run(self) -> DurableSessionQuerySet:
        """Annotate ``run_status``, ``run_message_id`` and ``run_retry_reason`` of each
        session's newest run (what the agent's status is computed from)."""
        run = AgentRun.objects.filter(session=OuterRef("pk")).order_by("-id")
        return self.annotate(
            run_status=Subquery(run.values("status")[:1]),
            run_message_id=Subquery(run.values("message_id")[:1]),
            run_retry_reason=Subquery(run.values("retry_reason")[:1]),
        )


class DurableSession(models.Model):
    """One conversation between a customer, an AI agent and operators.

    ``last_seq`` is the ``seq`` of the newest event; allocating the next one is an
    ``UPDATE ... SET last_seq = last_seq + n`` on this row, which also serialises
    the writers of one session without a table lock.
    """

    id = models.UUIDField(
        primary_key=True, default=uuid.uuid4, editable=False, verbose_name=_("ID")
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="durable_sessions",
        verbose_name=_("owner"),
    )
    # For an anonymous visitor: the opaque id kept in their browser's Django session.
    owner_visitor = models.CharField(
        max_length=64, blank=True, default="", db_index=True, verbose_name=_("owner visitor")
    )
    title = models.CharField(max_length=200, blank=True, default="", verbose_name=_("title"))
    control = models.CharField(
        max_length=10, choices=Control.choices, default=Control.AI, verbose_name=_("control")
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.OPEN, verbose_name=_("status")
    )
    assigned_operator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_durable_sessions",
        verbose_name=_("assigned operator"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))
    closed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("closed at"))
    metadata = models.JSONField(default=dict, blank=True, verbose_name=_("metadata"))
    last_seq = models.BigIntegerField(default=0, verbose_name=_("last seq"))

    objects = DurableSessionQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at"]
        indexes = [
            models.Index(fields=["status", "control", "updated_at"], name="ds_session_queue_idx"),
            # What retention looks for: closed sessions by closing time.
            models.Index(fields=["status", "closed_at"], name="ds_session_closed_idx"),
        ]
        # Declared here, not by the console: the core decides who is an operator.
        permissions = [("operate_sessions", "Can read and operate any session")]
        verbose_name = pgettext_lazy("durable session", "session")
        verbose_name_plural = pgettext_lazy("durable session", "sessions")

    def __str__(self) -> str:
        return self.title or gettext("Session %(id)s") % {"id": self.id}


class ParticipantKind(models.TextChoices):
    CUSTOMER = "customer", _("Customer")
    AGENT = "agent", _("AI agent")
    OPERATOR = "operator", _("Operator")
    SYSTEM = "system", _("System")


class Participant(models.Model):
    """Someone (or something) taking part in a session."""

    session = models.ForeignKey(
        DurableSession, on_delete=models.CASCADE, related_name="participants"
    )
    kind = models.CharField(max_length=10, choices=ParticipantKind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    display_name = models.CharField(max_length=150)
    joined_at = models.DateTimeField(auto_now_add=True)
    left_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # One customer, one agent and one system participant per session.
            models.UniqueConstraint(
                fields=["session", "kind"],
                condition=~models.Q(kind="operator"),
                name="ds_participant_one_per_kind",
            ),
            models.UniqueConstraint(
                fields=["session", "user"],
                condition=models.Q(kind="operator"),
                name="ds_participant_one_per_operator",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.kind})"


class Role(models.TextChoices):
    USER = "user", pgettext_lazy("message role", "User")
    ASSISTANT = "assistant", _("Assistant")
    OPERATOR = "operator", _("Operator")
    SYSTEM = "system", _("System")


class MessageState(models.TextChoices):
    STREAMING = "streaming", _("Streaming")
    COMPLETE = "complete", _("Complete")
    CANCELLED = "cancelled", _("Cancelled")
    FAILED = "failed", _("Failed")


class Message(models.Model):
    """A message of the transcript; assistant messages grow by coalesced deltas."""

    session = models.ForeignKey(DurableSession, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True, default="")
    state = models.CharField(
        max_length=10, choices=MessageState.choices, default=MessageState.COMPLETE
    )
    # Chosen by the sending client; a retry with the same id is stored once.
    client_id = models.CharField(max_length=64, null=True, blank=True)
    # The seq of the event that created the message.
    seq = models.BigIntegerField()
    # How a customer's message sent while the agent was busy was taken: "queue", "steer"
    # or "interrupt" (see service/steering.py); empty for every other message.
    send_mode = models.CharField(max_length=10, blank=True, default="")
    # The running run a steering message was sent into (it reads it at a step boundary).
    steer_run = models.ForeignKey(
        "AgentRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Branches (see service/branches.py). An edit or a regeneration is a new version of a
    # message: ``version_of`` is the first version of its sibling group (null on firsts).
    version_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="versions"
    )
    # Null while the message is on the shown branch; else the version whose subtree was
    # hidden with it (showing that version again shows it). Linear sessions never set it.
    hidden_under = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A default, not auto_now_add: a complete message gets the same instant for both.
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    # When the reply's deltas were folded into message.snapshot events (compaction).
    compacted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["session_id", "seq"]
        constraints = [
            # Also the index of the transcript in order.
            models.UniqueConstraint(fields=["session", "seq"], name="ds_message_session_seq"),
            models.UniqueConstraint(
                fields=["session", "client_id"],
                condition=models.Q(client_id__isnull=False),
                name="ds_message_client_id_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["session", "state"], name="ds_message_state_idx"),
            # The replies still to compact, oldest ending first.
            models.Index(
                fields=["completed_at"],
                condition=models.Q(role="assistant", compacted_at__isnull=True),
                name="ds_message_compact_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:50]}"


class Event(models.Model):
    """One entry of a session's append-only log, addressed by a gapless ``seq``."""

    session = models.ForeignKey(
        DurableSession,
        on_delete=models.CASCADE,
        related_name="events",
        verbose_name=pgettext_lazy("durable session", "session"),
        # The unique (session, seq) index serves every lookup by session (reads, cascades):
        # a second index would cost every append an entry.
        db_index=False,
    )
    seq = models.BigIntegerField(verbose_name=_("seq"))
    type = models.CharField(max_length=40, verbose_name=_("type"))
    payload = models.JSONField(default=dict, verbose_name=_("payload"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        ordering = ["session_id", "seq"]
        constraints = [
            # Also the index that serves "session X after seq N".
            models.UniqueConstraint(fields=["session", "seq"], name="ds_event_session_seq"),
        ]
        verbose_name = _("event")
        verbose_name_plural = _("events")

    def __str__(self) -> str:
        return f"#{self.seq} {self.type}"


class PartType(models.TextChoices):
    """What a part of a message holds (one-to-one with the AI SDK's UI message parts)."""

    TEXT = "text", _("Text")
    REASONING = "reasoning", _("Reasoning")
    TOOL_CALL = "tool_call", _("Tool call")
    DATA = "data", _("Data")
    SOURCE = "source", _("Source")


class PartState(models.TextChoices):
    """Where a part is: text and reasoning stream then are done; a tool call moves through
    input, approval, execution and its outcome."""

    STREAMING = "streaming", _("Streaming")
    DONE = "done", _("Done")
    INPUT_STREAMING = "input-streaming", _("Input streaming")
    AWAITING_APPROVAL = "awaiting-approval", _("Awaiting approval")
    APPROVED = "approved", _("Approved")
    DENIED = "denied", _("Denied")
    RUNNING = "running", _("Running")
    ERROR = "error", _("Error")
    CANCELLED = "cancelled", _("Cancelled")


class Approvers(models.TextChoices):
    """Who may answer a tool call's approval request."""

    ANY = "any", _("The customer or an operator")
    CUSTOMER = "customer", _("The customer")
    OPERATOR = "operator", _("An operator")


class MessagePart(models.Model):
    """One part of a message, in order: text, reasoning, a tool call, data or a source.

    Streamed parts grow by deltas that each have their own seq in the log; a tool call
    carries its input (streamed as text, then parsed), its approval and its outcome.
    Messages without part rows (customer, operator and system messages, and replies from
    before parts existed) are one text part made from their content.
    """

    session = models.ForeignKey(DurableSession, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="parts")
    index = models.PositiveIntegerField()
    # The agent's step (model call) the part belongs to; steps start at 0.
    step = models.PositiveIntegerField(default=0)
    type = models.CharField(max_length=10, choices=PartType.choices)
    state = models.CharField(max_length=20, choices=PartState.choices)
    # Text and reasoning: their text; a tool call: its input as streamed (JSON text).
    text = models.TextField(blank=True, default="")
    tool_name = models.CharField(max_length=100, blank=True, default="")
    tool_call_id = models.CharField(max_length=100, blank=True, default="")
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # A data part: {"name", "data"}; a source: {"url", "title"}.
    data = models.JSONField(null=True, blank=True)
    # The approval of a tool call (empty when none was needed).
    approvers = models.CharField(max_length=10, choices=Approvers.choices, blank=True, default="")
    approval_expires_at = models.DateTimeField(null=True, blank=True)
    decision = models.CharField(max_length=10, blank=True, default="")
    decision_reason = models.TextField(blank=True, default="")
    decided_by = models.ForeignKey(
        Participant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    # The answering client's id: its retry is the same answer, not a second one.
    decision_client_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["message_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["message", "index"], name="ds_part_message_index"),
        ]
        indexes = [models.Index(fields=["session", "state"], name="ds_part_session_state_idx")]

    def __str__(self) -> str:
        return f"{self.type} part {self.index} of message {self.message_id}"

    @property
    def wire_id(self) -> str:
        """The part's stable id on the wire (also its approval's id)."""
        return part_wire_id(self.message_id, self.index)


def part_wire_id(message_id: int, index: int) -> str:
    return f"m{message_id}p{index}"


class RunStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    RUNNING = "running", _("Running")
    COMPLETED = "completed", _("Completed")
    CANCELLED = "cancelled", _("Cancelled")
    FAILED = "failed", _("Failed")
    CRASHED = "crashed", _("Crashed (lease expired)")
    # Suspended on a tool call that waits for a person's answer: no worker holds it.
    AWAITING = "awaiting", _("Awaiting approval")


class AgentRun(models.Model):
    """One agent turn: claimed by exactly one worker, kept alive by a lease.

    A run whose lease expires while ``running`` belongs to a dead process: it is pending
    again and another worker continues it from its reply's parts, until ``crashes``
    reaches ``RUN_MAX_ATTEMPTS``; then its reply is marked failed and the session is
    escalated (see ``durable_sessions.service.retries``).
    """

    session = models.ForeignKey(DurableSession, on_delete=models.CASCADE, related_name="runs")
    # The user message that started the run.
    trigger = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The assistant message the run writes, once its first token arrived.
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.PENDING)
    worker = models.CharField(max_length=100, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # How often a worker claimed the run, and how many of those attempts ended with a
    # lost lease (a planned hand-back is not one).
    attempts = models.PositiveIntegerField(default=0)
    crashes = models.PositiveIntegerField(default=0)
    # Why a pending run waits for another worker ("worker_lost", "handed_back"); empty once
    # claimed (and for a run that waits for its first worker or after an approval).
    retry_reason = models.CharField(max_length=12, blank=True, default="")
    # The seq of the newest steering message the run has read (0: none yet).
    steered_seq = models.BigIntegerField(default=0)
    # The reply this run writes a new version of (a regeneration), if any.
    regenerates = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["session_id", "id"]
        indexes = [
            models.Index(fields=["status", "lease_expires_at"], name="ds_run_status_lease_idx"),
            models.Index(fields=["session", "status"], name="ds_run_session_status_idx"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.status})"


class AgentWorker(models.Model):
    """A live worker process, seen at each of its sweeps: claims are shared among them."""

    name = models.CharField(max_length=100, primary_key=True)
    seen_at = models.DateTimeField()
    # Stopping (SIGTERM): it claims nothing more and hands its runs back.
    draining = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.name


class HandoffAction(models.TextChoices):
    REQUEST = "request", _("Asked for a human")
    TAKE_OVER = "take_over", _("Taken over")
    HAND_BACK = "hand_back", _("Handed back to the AI")
    TRANSFER = "transfer", _("Transferred")
    CLOSE = "close", _("Closed")
    ESCALATE = "escalate", _("Escalated after an agent crash")
    CONTROL = "control", _("Control changed")


class HandoffRecord(models.Model):
    """Audit trail of control transitions: who did what, when, and why."""

    session = models.ForeignKey(
        DurableSession, on_delete=models.CASCADE, related_name="handoff_records"
    )
    action = models.CharField(max_length=12, choices=HandoffAction.choices)
    from_control = models.CharField(max_length=10, choices=Control.choices)
    to_control = models.CharField(max_length=10, choices=Control.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text=_("The user who acted; empty for the customer, the agent or the system."),
    )
    actor_kind = models.CharField(max_length=10, blank=True, default="")
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text=_("The operator holding the session afterwards."),
    )
    reason = models.TextField(blank=True, default="")
    seq = models.BigIntegerField(help_text=_("The seq of the control.changed or closing event."))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["session_id", "seq"]
        indexes = [models.Index(fields=["session", "seq"], name="ds_handoff_session_seq_idx")]

    def __str__(self) -> str:
        return f"{self.get_action_display()} ({self.from_control} -> {self.to_control})"


class DeviceGrantQuerySet(models.QuerySet):
    """Which device grants still open their session."""

    def redeemed_by(self, visitor: str) -> DeviceGrantQuerySet:
        """Grants the browser ``visitor`` redeemed and nobody revoked."""
        return self.filter(
            redeemed_by_visitor=visitor, redeemed_at__isnull=False, revoked_at__isnull=True
        )

    def counting(self) -> DeviceGrantQuerySet:
        """Grants that count against a session's limit: a device that holds one, or a link
        that can still be opened."""
        return self.filter(revoked_at__isnull=True).filter(
            Q(redeemed_at__isnull=False) | Q(expires_at__gt=timezone.now())
        )


class DeviceGrant(models.Model):
    """Access to one session for one more browser, from a "continue on another device" link.

    The link carries a random token; only its SHA-256 is stored. Opening the link (once,
    before ``expires_at``, while the session is open) binds the grant to the opening
    browser's own visitor id: that browser gains this one session and nothing else, and
    keeps its own identity. The customer sees their grants and may revoke any of them;
    a grant stops working when the session closes. Written only by
    ``durable_sessions.service.devices``.
    """

    session = models.ForeignKey(
        DurableSession,
        on_delete=models.CASCADE,
        related_name="device_grants",
        verbose_name=pgettext_lazy("durable session", "session"),
    )
    token_hash = models.CharField(
        max_length=64, unique=True, editable=False, verbose_name=_("token hash")
    )
    created_at = models.DateTimeField(default=timezone.now, verbose_name=_("created at"))
    # The last moment the link can be opened; a device that opened it in time keeps access.
    expires_at = models.DateTimeField(verbose_name=_("expires at"))
    redeemed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("redeemed at"))
    # The visitor id of the browser that opened the link (its own, never the owner's).
    redeemed_by_visitor = models.CharField(
        max_length=64, blank=True, default="", verbose_name=_("redeemed by visitor")
    )
    revoked_at = models.DateTimeField(null=True, blank=True, verbose_name=_("revoked at"))

    objects = DeviceGrantQuerySet.as_manager()

    class Meta:
        ordering = ["session_id", "id"]
        indexes = [
            models.Index(
                fields=["session", "redeemed_by_visitor"], name="ds_grant_session_visitor"
            ),
        ]
        verbose_name = _("device grant")
        verbose_name_plural = _("device grants")

    def __str__(self) -> str:
        return f"device grant {self.pk} ({self.state})"

    @property
    def state(self) -> str:
        """``revoked``, ``active`` (a device holds it), ``expired`` or ``pending``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.redeemed_at is not None:
            return "active"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"


# Generic Durable Streams and the audit trail of deletions live in modules of their own;
# importing them here registers them.
# The customer's rating of a closed conversation (CSAT).
from durable_sessions.chat_models import ChatLink  # noqa: E402, F401
from durable_sessions.rating_models import SessionRating  # noqa: E402, F401
from durable_sessions.retention_models import DeletionRecord  # noqa: E402, F401
from durable_sessions.stream_models import (  # noqa: E402, F401
    Stream,
    StreamEntry,
    StreamProducer,
)
