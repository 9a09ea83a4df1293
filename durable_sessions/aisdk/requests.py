"""The AI SDK's chat request body (``DefaultChatTransport``), checked field by field.

Only what the server acts on is read: the chat ``id``, the ``trigger``, the
``messageId`` and the last message of ``messages`` (the SDK sends the whole chat; the
durable session already holds everything before it). Every other top-level key is the
host's ``body`` option, kept as the new session's metadata when this post creates it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from durable_sessions.errors import InvalidInput
from durable_sessions.service.chats import clean_chat_id
from durable_sessions.service.validation import MAX_CLIENT_ID, clean_json, has_surrogate

TRIGGERS = ("submit-message", "regenerate-message")
KNOWN = {"id", "messages", "trigger", "messageId"}
# The host's extra fields, as session metadata: small, or refused.
MAX_METADATA_BYTES = 4096
MAX_MESSAGES = 10_000


@dataclass(frozen=True)
class Approval:
    approval_id: str
    approved: bool
    reason: str


@dataclass(frozen=True)
class ChatRequest:
    chat_id: str
    trigger: str
    message_id: str | None
    # submit-message with a user message last: its id and text.
    user_id: str | None = None
    text: str = ""
    # submit-message with the answer last: the approvals the client answered in it.
    approvals: list[Approval] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def _string(name: str, value: Any, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidInput(name, f"must be a non-empty string of at most {limit} characters")
    if not value.isprintable() or has_surrogate(value):
        raise InvalidInput(name, "must contain printable characters only")
    return value


def _text_of(message: dict[str, Any]) -> str:
    parts = message.get("parts")
    if not isinstance(parts, list) or not parts:
        raise InvalidInput("messages", "the last message needs a list of parts")
    texts: list[str] = []
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise InvalidInput("messages", "each part is an object with a type")
        if part["type"] == "text":
            if not isinstance(part.get("text"), str):
                raise InvalidInput("messages", "a text part needs its text")
            texts.append(part["text"])
    if not texts:
        raise InvalidInput("messages", "the last message has no text part")
    return "".join(texts)


def _approvals_of(message: dict[str, Any]) -> list[Approval]:
    found: list[Approval] = []
    for part in message.get("parts") or ():
        if not isinstance(part, dict) or part.get("state") != "approval-responded":
            continue
        approval = part.get("approval")
        if not isinstance(approval, dict) or not isinstance(approval.get("approved"), bool):
            raise InvalidInput("messages", "an answered approval needs its id and approved")
        reason = approval.get("reason") or ""
        if not isinstance(reason, str):
            raise InvalidInput("messages", "an approval's reason is a string")
        found.append(
            Approval(_string("approval.id", approval.get("id"), 100), approval["approved"], reason)
        )
    return found


def parse_chat_request(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise InvalidInput("body", "must be a JSON object")
    chat_id = clean_chat_id(body.get("id"))
    trigger = body.get("trigger", "submit-message")
    if trigger not in TRIGGERS:
        raise InvalidInput("trigger", f"must be one of {', '.join(TRIGGERS)}")
    message_id = body.get("messageId")
    if message_id is not None:
        message_id = _string("messageId", message_id, 200)
    extra = clean_json("body", {k: v for k, v in body.items() if k not in KNOWN})
    if len(json.dumps(extra)) > MAX_METADATA_BYTES:
        raise InvalidInput("body", f"extra fields take at most {MAX_METADATA_BYTES} bytes")
    messages = body.get("messages")
    if not isinstance(messages, list) or len(messages) > MAX_MESSAGES:
        raise InvalidInput("messages", f"must be a list of at most {MAX_MESSAGES} messages")
    if trigger == "regenerate-message":
        return ChatRequest(chat_id, trigger, message_id, metadata=extra)
    if not messages:
        raise InvalidInput("messages", "must hold the message to send")
    last = messages[-1]
    if not isinstance(last, dict):
        raise InvalidInput("messages", "each message is an object")
    role = last.get("role")
    if role == "assistant":
        approvals = _approvals_of(last)
        if not approvals:
            raise InvalidInput(
                "messages", "the last message is an answer with no approval answered"
            )
        return ChatRequest(chat_id, trigger, message_id, approvals=approvals, metadata=extra)
    if role != "user":
        raise InvalidInput("messages", "the last message is the user's (or an answered approval)")
    user_id = _string("messages.id", last.get("id"), MAX_CLIENT_ID)
    return ChatRequest(chat_id, trigger, message_id, user_id, _text_of(last), metadata=extra)
