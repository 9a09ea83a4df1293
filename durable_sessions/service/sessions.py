"""Sessions and participants."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction

from durable_sessions import wire
from durable_sessions.adapter import AnyUser, get_adapter
from durable_sessions.errors import (
    InvalidInput,
)
from durable_sessions.models import (
    DurableSession,
    Participant,
    ParticipantKind,
)
from durable_sessions.service.log import clean_text, emit, lock


@transaction.atomic
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
    title = clean_text("title", title, limit=200, allow_empty=True)
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidInput("metadata", "must be an object")
    adapter = get_adapter()
    session = DurableSession.objects.create(
        owner=owner,
        owner_visitor="" if owner is not None else visitor,
        title=title,
        metadata=metadata or {},
    )
    people = [
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
    Participant.objects.bulk_create(people)
    locked = lock(session.id, 1)
    payload = wire.session_data(session)
    payload["last_seq"] = 1
    payload["participants"] = [wire.participant_data(p) for p in people]
    emit(locked, [(wire.SESSION_CREATED, payload)])
    session.last_seq = 1
    return session


@transaction.atomic
def join_operator(session_id: uuid.UUID | str, user: AnyUser) -> Participant:
    """Add ``user`` as an operator participant of the session (idempotent)."""
    # The row lock serialises joins: two at once cannot both create the participant.
    locked = lock(session_id, 0)
    participant, created = Participant.objects.get_or_create(
        session_id=locked.session_id,
        kind=ParticipantKind.OPERATOR,
        user=user,
        defaults={"display_name": get_adapter().display_name(user)},
    )
    if created:
        emit(
            locked, [(wire.PARTICIPANT_JOINED, {"participant": wire.participant_data(participant)})]
        )
    return participant


def participant_for(session_id: uuid.UUID | str, kind: str) -> Participant:
    return Participant.objects.get(session_id=session_id, kind=kind)


def system_participant(session_id: uuid.UUID) -> Participant:
    participant, _ = Participant.objects.get_or_create(
        session_id=session_id, kind=ParticipantKind.SYSTEM, defaults={"display_name": "System"}
    )
    return participant
