"""Canned replies: saved by operators, inserted in the composer with ``/shortcut``.

A reply may use variables, filled in by the page when it is inserted:
``{customer_name}``, ``{operator_name}`` and ``{conversation_title}``. Unknown variables
are left as written.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q

from durable_sessions.adapter import AnyUser
from durable_sessions.app_settings import ds_settings
from durable_sessions.errors import InvalidInput
from durable_sessions.service.validation import clean_text
from handoff_console.models import CannedReply

SHORTCUT = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
VARIABLES = ("customer_name", "operator_name", "conversation_title")
MAX_REPLIES = 500


def reply_data(reply: CannedReply) -> dict[str, Any]:
    return {
        "id": reply.pk,
        "shortcut": reply.shortcut,
        "text": reply.text,
        "shared": reply.owner_id is None,
    }


def replies_for(user: AnyUser) -> list[dict[str, Any]]:
    """The shared replies and the operator's own, by shortcut."""
    found = CannedReply.objects.filter(Q(owner__isnull=True) | Q(owner_id=user.pk))
    return [reply_data(r) for r in found[:MAX_REPLIES]]


def save_reply(*, owner: AnyUser, shortcut: Any, text: Any, shared: bool) -> CannedReply:
    """Store a canned reply; :class:`InvalidInput` for a bad or taken shortcut or text."""
    if not isinstance(shortcut, str) or not SHORTCUT.fullmatch(shortcut):
        raise InvalidInput(
            "shortcut", "1 to 40 lowercase letters, digits, - or _, starting with a letter or digit"
        )
    text = clean_text("text", text, limit=ds_settings.MAX_MESSAGE_CHARS)
    try:
        with transaction.atomic():
            return CannedReply.objects.create(
                shortcut=shortcut, text=text, owner=None if shared else owner
            )
    except IntegrityError:
        raise InvalidInput("shortcut", f"/{shortcut} is already taken") from None
