"""Validation of the text a writer gives the service: what is refused, and why."""

from __future__ import annotations

import re
from typing import Any

from durable_sessions.errors import InvalidInput

# Length limits, in characters, of the short texts of the service (messages have the
# MAX_MESSAGE_CHARS setting).
MAX_CLIENT_ID = 64
MAX_TITLE_CHARS = 200
MAX_REASON_CHARS = 500
MAX_SUMMARY_CHARS = 4000
MAX_TEAM_CHARS = 50
_TEAM = re.compile(r"[a-z0-9][a-z0-9_-]*")

# Lone UTF-16 surrogates: JSON's "\ud800" escape decodes to one, and no UTF-8 database
# or websocket can carry it.
_SURROGATE = re.compile("[\ud800-\udfff]")
# What PostgreSQL cannot store in text or JSON: NUL and lone surrogates.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate."""
    return _SURROGATE.search(text) is not None


def storable(text: str) -> str:
    """``text`` with each character no database can store (NUL, a lone surrogate) replaced
    by U+FFFD, one for one: for a model's output, which the service would refuse."""
    return _UNSTORABLE.sub("\ufffd", text)


def printable(text: str) -> str:
    """``text`` with lone surrogates escaped (``\\ud800``), to echo a client's key safely."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def clean_text(field: str, value: Any, *, limit: int, allow_empty: bool = False) -> str:
    """``value`` if it is text the service stores; :class:`InvalidInput` naming ``field``."""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if not allow_empty and not value.strip():
        raise InvalidInput(field, "must not be empty")
    if len(value) > limit:
        raise InvalidInput(field, f"is longer than {limit} characters")
    if "\x00" in value:
        raise InvalidInput(field, "must not contain NUL characters")
    if has_surrogate(value):
        raise InvalidInput(field, "must not contain lone surrogates (not valid Unicode text)")
    return value


def clean_client_id(value: Any) -> str | None:
    """A client's idempotency id, or None when it sent none."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_CLIENT_ID:
        raise InvalidInput("client_id", f"must be a non-empty string of at most {MAX_CLIENT_ID}")
    if not value.isprintable():
        raise InvalidInput("client_id", "must contain printable characters only")
    return value


def clean_team(value: Any) -> str:
    """A team's routing key (a slug: a-z, 0-9, ``-``, ``_``), or "" for no team.

    The core stores it opaquely in the queue's control event; which teams exist, and who
    belongs to them, is the console's business.
    """
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise InvalidInput("team", "must be a string")
    if len(value) > MAX_TEAM_CHARS or not _TEAM.fullmatch(value):
        raise InvalidInput(
            "team", f"must be a slug of a-z, 0-9, - and _ of at most {MAX_TEAM_CHARS} characters"
        )
    return value
