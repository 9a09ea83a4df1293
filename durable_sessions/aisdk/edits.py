"""The AI SDK's edit of a user message (``sendMessage({text, messageId})``), as the
session's edit service sees it.

The SDK keeps one id for every version of an edited message, so the id names the sibling
group and the edit applies to its version on the shown branch. The new version's client
id is made of the version it replaces and the text: a retried edit, even one racing the
first, is the same edit to the service and stores nothing twice.
"""

from __future__ import annotations

import hashlib
import uuid

from django.db.models import Q

from durable_sessions.errors import NotEditable
from durable_sessions.models import Message

EDIT_PREFIX = "aisdk-edit-"


def shown_version(session_id: uuid.UUID, sdk_id: str) -> Message:
    """The shown version of the message the SDK calls ``sdk_id``: the one whose client id
    it is (the message it sent), or the stored message with that REST id."""
    named = Q(client_id=sdk_id)
    if sdk_id.isdigit() and len(sdk_id) < 19:  # a REST id (a transcript loaded from the API)
        named |= Q(pk=int(sdk_id))
    found = (
        Message.objects.filter(session_id=session_id)
        .filter(named)
        .values_list("pk", "version_of_id")
        .first()
    )
    shown = None
    if found is not None:
        group = found[1] or found[0]
        shown = (
            Message.objects.filter(session_id=session_id, hidden_under__isnull=True)
            .filter(Q(pk=group) | Q(version_of_id=group))
            .first()
        )
    if shown is None:
        raise NotEditable(
            f"message {sdk_id!r} is not on the shown branch of this chat", field="messageId"
        )
    return shown


def edit_client_id(replaced: Message, text: str) -> str:
    """The new version's client id (at most 64 characters)."""
    digest = hashlib.sha256(f"{replaced.pk}\n{text}".encode()).hexdigest()[:40]
    return EDIT_PREFIX + digest
