"""The customer's rating of a closed conversation (CSAT).

Once per session: a retry with the same score and comment answers the stored rating
(``changed`` false); a different one is refused (:class:`Conflict`), so that what operators
read never changes under them. An open session cannot be rated yet.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from durable_sessions import wire
from durable_sessions.errors import Conflict, InvalidInput
from durable_sessions.models import Participant, SessionRating, Status
from durable_sessions.service.unit import session_write
from durable_sessions.service.validation import clean_text

MAX_COMMENT_CHARS = 1000


@dataclass(frozen=True)
class RateResult:
    rating: SessionRating
    changed: bool


def clean_score(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise InvalidInput("score", "must be an integer from 1 to 5")
    return value


def rate_session(
    session_id: uuid.UUID | str, *, by: Participant | None, score: Any, comment: Any = ""
) -> RateResult:
    """Store the customer's rating of the closed session, with a ``session.rated`` event."""
    score = clean_score(score)
    comment = clean_text("comment", comment, limit=MAX_COMMENT_CHARS, allow_empty=True).strip()
    with session_write(session_id) as w:
        if w.status != Status.CLOSED:
            raise Conflict("the conversation can be rated once it is closed")
        existing = SessionRating.objects.filter(session_id=w.session_id).first()
        if existing is not None:
            if (existing.score, existing.comment) == (score, comment):
                return RateResult(existing, False)
            raise Conflict("this conversation was already rated")
        rating = SessionRating(session_id=w.session_id, score=score, comment=comment)
        rating.created_at = timezone.now()
        rating.seq = w.append(
            wire.SESSION_RATED,
            {
                "score": score,
                "comment": comment,
                "by": wire.participant_data(by) if by else None,
            },
        )
        rating.save()
        return RateResult(rating, True)


def rating_of(session_id: uuid.UUID | str) -> SessionRating | None:
    return SessionRating.objects.filter(session_id=session_id).first()
