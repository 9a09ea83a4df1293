"""AI SDK chat ids: the durable session a chat id names, created on first use.

A chat id that is the UUID of an existing session names that session (so a frontend can
pass the id of a session it opened through another transport); any other chat id is
looked up in, or added to, the unique :class:`~durable_sessions.models.ChatLink` table.
Whether the caller may use the session is the transport's check (the adapter's rule).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import IntegrityError, transaction

from durable_sessions.adapter import AnyUser
from durable_sessions.chat_models import MAX_CHAT_ID
from durable_sessions.errors import InvalidInput
from durable_sessions.models import ChatLink, DurableSession
from durable_sessions.service.sessions import create_session
from durable_sessions.service.validation import has_surrogate


def clean_chat_id(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_CHAT_ID:
        raise InvalidInput("id", f"must be a non-empty string of at most {MAX_CHAT_ID} characters")
    if not value.isprintable() or has_surrogate(value):
        raise InvalidInput("id", "must contain printable characters only")
    return value


def find_chat(chat_id: str) -> DurableSession | None:
    """The session a chat id names, or None when it names none yet."""
    try:
        as_uuid = uuid.UUID(chat_id)
    except ValueError:
        as_uuid = None
    if as_uuid is not None:
        session = DurableSession.objects.filter(pk=as_uuid).first()
        if session is not None:
            return session
    link = ChatLink.objects.select_related("session").filter(chat_id=chat_id).first()
    return None if link is None else link.session


def chat_id_of(session_id: uuid.UUID) -> str | None:
    return ChatLink.objects.filter(session_id=session_id).values_list("chat_id", flat=True).first()


def open_chat(
    chat_id: Any,
    *,
    owner: AnyUser | None,
    visitor: str,
    metadata: dict[str, Any] | None = None,
) -> tuple[DurableSession, bool]:
    """The session of ``chat_id``, created for ``owner`` or ``visitor`` when there is none
    yet; True when it was created. Two first posts at once create one session: the loser
    of the unique link reads the winner's."""
    chat_id = clean_chat_id(chat_id)
    found = find_chat(chat_id)
    if found is not None:
        return found, False
    try:
        with transaction.atomic():
            session = create_session(owner=owner, visitor=visitor, metadata=metadata)
            ChatLink.objects.create(chat_id=chat_id, session=session)
    except IntegrityError:
        found = find_chat(chat_id)
        if found is None:
            raise
        return found, False
    return session, True
