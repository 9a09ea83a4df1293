"""Sessions and participants."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction

from durable_sessions import signals, wire
from durable_sessions.adapter import AnyUser, get_adapter
from durable_sessions.errors import InvalidInput
from durable_sessions.models import DurableSession, Participant, ParticipantKind
from durable_sessions.service.unit import SessionWrite, new_session_write, session_write
from durable_sessions.service.validation import MAX_TITLE_CHARS, clean_json, clean_text


def create_session(
    *,
    owner: AnyUser | None = None,
    visitor: str = "",
    title: str = "",
    metadata: dict[str, Any] | None = None,
) -> DurableSession:
    """Create a session owned by ``owner`` (a user) or an anonymous ``visitor`` id."""
    if owner is not None and not owner.is_authenticated:
        owner = None
    if owner is None and not visitor:
        raise InvalidInput("owner", "a session needs a user or an anonymous visitor id")
    title = clean_text("title", title, limit=MAX_TITLE_CHARS, allow_empty=True)
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidInput("metadata", "must be an object")
    clean_json("metadata", metadata)
    adapter = get_adapter()
    with transaction.atomic():
        session = DurableSession.objects.create(
            owner=owner,
            owner_visitor="" if owner is not None else visitor,
            title=title,
            metadata=metadata or {},
        )
        people = Participant.objects.bulk_create(
            [
                Participant(
                    session=session,
                    kind=ParticipantKind.CUSTOMER,
                    user=owner,
                    display_name=adapter.display_name(owner),
                ),
                Participant(
                    session=session,
                    kind=ParticipantKind.AGENT,
                    display_name=adapter.agent_name(session),
                ),
            ]
        )
        with new_session_write(session, people) as w:
            payload = wire.session_data(session)
            payload["last_seq"] = 1
            payload["participants"] = [wire.participant_data(p) for p in people]
            w.append(wire.SESSION_CREATED, payload)
            w.signal(signals.session_created, session=session)
    session.last_seq = 1
    return session


def join_operator(session_id: uuid.UUID | str, user: AnyUser) -> Participant:
    """Add ``user`` as an operator participant of the session (idempotent)."""
    with session_write(session_id) as w:
        return operator_participant(w, user)


def operator_participant(
    w: SessionWrite, user: AnyUser, *, with_system: bool = False
) -> Participant:
    """``user``'s operator participant in the unit's session, joining them if new.

    ``with_system`` also makes sure the author of notices exists, in the same INSERT
    (an operator who joins is announced with a notice). The session lock serialises
    joins: two at once cannot both create the participant.
    """
    participant = w.participant(ParticipantKind.OPERATOR, user.pk)
    joined = participant is None
    new: list[Participant] = []
    if participant is None:
        participant = Participant(
            session_id=w.session_id,
            kind=ParticipantKind.OPERATOR,
            user=user,
            display_name=get_adapter().operator_name(user),
        )
        new.append(participant)
    if with_system and w.participant(ParticipantKind.SYSTEM) is None:
        new.append(_system(w))
    if new:
        Participant.objects.bulk_create(new)
        for p in new:
            w.add_participant(p)
        if joined:
            w.append(wire.PARTICIPANT_JOINED, {"participant": wire.participant_data(participant)})
    return participant


def participant_for(session_id: uuid.UUID | str, kind: str) -> Participant:
    """The session's customer, agent or system participant."""
    return Participant.objects.get(session_id=session_id, kind=kind)


def system_participant(w: SessionWrite) -> Participant:
    """The author of notices, who joins with the session's first notice."""
    participant = w.participant(ParticipantKind.SYSTEM)
    if participant is None:
        participant = _system(w)
        participant.save()
        w.add_participant(participant)
    return participant


def _system(w: SessionWrite) -> Participant:
    return Participant(session_id=w.session_id, kind=ParticipantKind.SYSTEM, display_name="System")
