"""Putting a session an operator holds back in the queue: a transfer to a team, or the
release of a claim whose operator went away.

Both are control changes like any other: one ``control.changed`` event (with the team,
when there is one) and an audit row, in the session's unit of work.
"""

from __future__ import annotations

import uuid

from durable_sessions import signals
from durable_sessions.adapter import AnyUser
from durable_sessions.errors import InvalidInput
from durable_sessions.models import Control, HandoffAction, Status
from durable_sessions.service.control import _announce, _holder, _reason
from durable_sessions.service.messages import add_notice
from durable_sessions.service.unit import session_write
from durable_sessions.service.validation import clean_team


def transfer_to_team(
    session_id: uuid.UUID | str, operator: AnyUser, team: str, *, reason: str = ""
) -> None:
    """The operator holding the session passes it to a team: it waits in the queue again,
    routed to ``team`` (a slug), with ``reason`` as the note its next operator reads."""
    team = clean_team(team)
    if not team:
        raise InvalidInput("team", "must not be empty")
    reason = _reason(reason)
    with session_write(session_id) as w:
        participant = _holder(w, operator)
        _announce(
            w,
            Control.QUEUED,
            HandoffAction.TRANSFER,
            stop=None,
            by=participant,
            actor=operator,
            reason=reason or f"transferred to the {team} team",
            summary="",
            team=team,
        )
        add_notice(w, "A member of our team will join you shortly.")
        w.signal(signals.transferred, operator=operator, to=None, team=team)


def release_claim(
    session_id: uuid.UUID | str, operator_id: int, *, reason: str = "", team: str = ""
) -> bool:
    """Put the session back in the queue (for ``team``, if given) when ``operator_id``
    still holds it; False when they no longer do (nothing changes)."""
    team = clean_team(team)
    reason = _reason(reason)
    with session_write(session_id) as w:
        if (
            w.status != Status.OPEN
            or w.control != Control.HUMAN
            or w.assigned_operator_id != operator_id
        ):
            return False
        _announce(
            w,
            Control.QUEUED,
            HandoffAction.CONTROL,
            stop=None,
            reason=reason or "the operator went offline",
            summary="",
            **({"team": team} if team else {}),
        )
        add_notice(w, "A member of our team will join you shortly.")
        return True
