"""The console's own data: operators' private notes.

Who may use the console is the core's operator permission
(``DURABLE_SESSIONS["OPERATOR_PERMISSION"]``, by default ``durable_sessions.operate_sessions``).

Notes belong to the console, not to the session log: they never become events, so no
customer connection can ever replay them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from durable_sessions.models import DurableSession


class OperatorNote(models.Model):
    """A private note an operator wrote about a session; only operators ever see it."""

    session = models.ForeignKey(
        DurableSession,
        on_delete=models.CASCADE,
        related_name="operator_notes",
        verbose_name=pgettext_lazy("durable session", "session"),
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text=_("Empty once the author's account was deleted."),
        verbose_name=_("author"),
    )
    text = models.TextField(verbose_name=_("text"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        ordering = ["session_id", "created_at", "id"]
        indexes = [models.Index(fields=["session", "created_at"], name="hc_note_session_idx")]
        verbose_name = _("operator note")
        verbose_name_plural = _("operator notes")

    def __str__(self) -> str:
        return f"note by {self.author_id} on {self.session_id}"


class ReadMark(models.Model):
    """How far an operator has read a session's log: the unread count of their rows."""

    session = models.ForeignKey(DurableSession, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    seq = models.BigIntegerField(default=0, help_text=_("The last seq of the log they have seen."))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "user"], name="hc_readmark_session_user")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} read {self.session_id} to {self.seq}"


class CannedReply(models.Model):
    """A saved reply an operator inserts with ``/shortcut``; shared with every operator
    when it has no owner."""

    shortcut = models.SlugField(max_length=40, verbose_name=_("shortcut"))
    text = models.TextField(verbose_name=_("text"))
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text=_("Empty: shared with every operator."),
        verbose_name=_("owner"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        ordering = ["shortcut", "id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "shortcut"], name="hc_canned_owner_shortcut"),
            models.UniqueConstraint(
                fields=["shortcut"],
                condition=models.Q(owner__isnull=True),
                name="hc_canned_shared_shortcut",
            ),
        ]
        verbose_name = _("canned reply")
        verbose_name_plural = _("canned replies")

    def __str__(self) -> str:
        return f"/{self.shortcut}"


class Team(models.Model):
    """A team of operators; a session queued for its slug (the agent's
    ``Handoff(team=...)``, a transfer, or the adapter's rule) goes to its members."""

    slug = models.SlugField(
        max_length=50, unique=True, help_text=_("The routing key."), verbose_name=_("slug")
    )
    name = models.CharField(max_length=100, verbose_name=_("name"))
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="+", verbose_name=_("members")
    )

    class Meta:
        ordering = ["name", "slug"]
        verbose_name = _("team")
        verbose_name_plural = _("teams")

    def __str__(self) -> str:
        return self.name


class Availability(models.TextChoices):
    ONLINE = "online", _("Online")
    AWAY = "away", _("Away")
    OFFLINE = "offline", _("Offline")


class OperatorAvailability(models.Model):
    """Whether an operator takes conversations, as they set it in the console, and when
    their console was last connected (without one they count as offline)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="+",
        verbose_name=_("user"),
    )
    status = models.CharField(
        max_length=10,
        choices=Availability.choices,
        default=Availability.ONLINE,
        verbose_name=_("status"),
    )
    seen_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("The last heartbeat of one of their console pages."),
        verbose_name=_("seen at"),
    )
    last_assigned_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When auto-assignment last gave them a conversation."),
        verbose_name=_("last assigned at"),
    )
    changed_at = models.DateTimeField(auto_now_add=True, verbose_name=_("changed at"))

    class Meta:
        verbose_name = _("operator availability")
        verbose_name_plural = _("operator availability")

    def __str__(self) -> str:
        return f"{self.user_id} {self.status}"
