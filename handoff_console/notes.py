"""Private notes: written by operators about a session, seen only by operators.

A note is the console's own data (:class:`~handoff_console.models.OperatorNote`), never
an event of the session log, so resuming a session can never replay one to its
customer. Operators viewing the session hear about a new note through an operators-only
ephemeral frame; the database stays the truth (the session view re-reads the notes
whenever it reconnects).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction

from durable_sessions import wire
from durable_sessions.adapter import AnyUser, get_adapter
from durable_sessions.delivery.publish import ephemeral_wakeup, publish_on_commit
from durable_sessions.errors import InvalidInput, SessionNotFound
from durable_sessions.models import DurableSession
from durable_sessions.service.validation import clean_text
from handoff_console.app_settings import console_settings
from handoff_console.models import OperatorNote
from handoff_console.permissions import can_view, is_operator

NOTE_CREATED = "note.created"


def note_data(note: OperatorNote) -> dict[str, Any]:
    """A note as the console's pages and frames carry it."""
    author = note.author
    return {
        "id": note.pk,
        "session_id": str(note.session_id),
        "author": (
            {"id": author.pk, "name": get_adapter().display_name(author)}
            if author is not None
            else {"id": None, "name": "(deleted user)"}
        ),
        "text": note.text,
        "created_at": wire.iso(note.created_at),
    }


def _clean(text: Any) -> str:
    return clean_text("text", text, limit=console_settings.MAX_NOTE_CHARS)


def add_note(session_id: uuid.UUID | str, *, author: AnyUser, text: Any) -> OperatorNote:
    """Store a private note by the operator ``author`` and tell the operators viewing.

    Raises :class:`InvalidInput` for bad text or a non-operator author and
    :class:`SessionNotFound` when the session does not exist or is not theirs to see.
    """
    text = _clean(text)
    if not is_operator(author):
        raise InvalidInput("author", "only operators write notes")
    session = DurableSession.objects.filter(pk=session_id).first()
    if session is None or not can_view(session, author):
        raise SessionNotFound(f"session {session_id} does not exist")
    with transaction.atomic():
        note = OperatorNote.objects.create(session=session, author=author, text=text)
        # Sent after commit, to the operators of this session only.
        frame = {"type": NOTE_CREATED, "note": note_data(note)}
        publish_on_commit([ephemeral_wakeup(session.id, frame, operators_only=True)])
    return note


def notes_for(session_id: uuid.UUID | str) -> list[dict[str, Any]]:
    """Every note of a session, oldest first."""
    notes = OperatorNote.objects.filter(session_id=session_id).select_related("author")
    return [note_data(n) for n in notes]
