"""Chat ids of AI SDK frontends, each mapped to the durable session that holds the chat."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

MAX_CHAT_ID = 200


class ChatLink(models.Model):
    """A chat id chosen by an AI SDK client (``useChat``'s ``id``) and its session.

    Unique, so that every device posting with the same chat id reaches the same session;
    a chat id that is the UUID of a session the caller may use needs no link (see
    ``durable_sessions.service.chats``). Written by the session service only.
    """

    chat_id = models.CharField(max_length=MAX_CHAT_ID, unique=True)
    session = models.OneToOneField(
        "durable_sessions.DurableSession", on_delete=models.CASCADE, related_name="chat_link"
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"chat {self.chat_id} of {self.session_id}"
