"""The audit trail of deletions: retention runs and customers' erasures.

A record says who deleted, when, how many sessions and how many rows of each kind; it
keeps no personal data of the customer (no id, name, visitor id or text), so it may be
kept after everything it counts is gone.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class DeletionKind(models.TextChoices):
    RETENTION = "retention", "Retention (closed sessions past their time)"
    ERASURE = "erasure", "Erasure of a customer's data"


class DeletionRecord(models.Model):
    """One deletion: a retention run, or the erasure of one customer's data."""

    kind = models.CharField(max_length=10, choices=DeletionKind.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The staff user who erased; empty for a command or host code.",
    )
    # Where it was asked: "admin", "api", "command" or "python".
    via = models.CharField(max_length=20, blank=True, default="")
    # For an erasure: whether the customer was a "user" or an anonymous "visitor".
    subject = models.CharField(max_length=10, blank=True, default="")
    sessions = models.PositiveIntegerField(default=0)
    # Rows deleted per model ("durable_sessions.Event": 120, ...).
    counts = models.JSONField(default=dict, blank=True)
    # Retention: the closing time before which sessions were deleted, and the archive's
    # file name (no directory).
    closed_before = models.DateTimeField(null=True, blank=True)
    archive = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        app_label = "durable_sessions"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.sessions} sessions"
