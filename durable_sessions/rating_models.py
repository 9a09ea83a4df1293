"""The customer's rating of a closed conversation (CSAT): one per session."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class SessionRating(models.Model):
    """How the customer rated the conversation once it was closed: 1 (bad) to 5 (great),
    with an optional comment. Written by the session service (``rate_session``), with a
    ``session.rated`` event in the log."""

    session = models.OneToOneField(
        "durable_sessions.DurableSession",
        on_delete=models.CASCADE,
        related_name="rating",
        verbose_name=pgettext_lazy("durable session", "session"),
    )
    score = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(5)], verbose_name=_("score")
    )
    comment = models.TextField(blank=True, verbose_name=_("comment"))
    seq = models.BigIntegerField(
        help_text=_("The seq of its session.rated event."), verbose_name=_("seq")
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(score__gte=1, score__lte=5), name="ds_rating_score_1_to_5"
            )
        ]
        verbose_name = _("session rating")
        verbose_name_plural = _("session ratings")

    def __str__(self) -> str:
        return f"{self.score}/5 for {self.session_id}"
