"""The audit trail of deletions: retention runs and customers' erasures.

A record says who deleted, when, how many sessions and how many rows of each kind; it
keeps no personal data of the customer (no id, name, visitor id or text), so it may be
kept after everything it counts is gone.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class DeletionKind(models.TextChoices):
    RETENTION = "retention", _("Retention (closed sessions past their time)")
    ERASURE = "erasure", _("Erasure of a customer's data")


class DeletionRecord(models.Model):
    """One deletion: a retention run, or the erasure of one customer's data."""

    kind = models.CharField(max_length=10, choices=DeletionKind.choices, verbose_name=_("kind"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text=_("The staff user who erased; empty for a command or host code."),
        verbose_name=_("actor"),
    )
    # Where it was asked: "admin", "api", "command" or "python".
    via = models.CharField(max_length=20, blank=True, default="", verbose_name=_("via"))
    # For an erasure: whether the customer was a "user" or an anonymous "visitor".
    subject = models.CharField(max_length=10, blank=True, default="", verbose_name=_("subject"))
    sessions = models.PositiveIntegerField(
        default=0, verbose_name=pgettext_lazy("durable session", "sessions")
    )
    # Rows deleted per model ("durable_sessions.Event": 120, ...).
    counts = models.JSONField(default=dict, blank=True, verbose_name=_("counts"))
    # Retention: the closing time before which sessions were deleted, and the archive's
    # file name (no directory).
    closed_before = models.DateTimeField(null=True, blank=True, verbose_name=_("closed before"))
    archive = models.CharField(max_length=255, blank=True, default="", verbose_name=_("archive"))

    class Meta:
        app_label = "durable_sessions"
        ordering = ["-created_at", "-id"]
        verbose_name = _("deletion record")
        verbose_name_plural = _("deletion records")

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.sessions} sessions"
