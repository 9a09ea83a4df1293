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


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate."""
    return _SURROGATE.search(text) is not None


def storable(text: str) -> bool:
    """Whether ``text`` can be part of a query on every supported database: PostgreSQL
    refuses NUL in text (and ``\\u0000`` in jsonb), and no UTF-8 database takes a lone
    surrogate."""
    return "\x00" not in text and not has_surrogate(text)


def scrub(text: str) -> str:
    """``text`` with NUL and lone surrogates replaced by U+FFFD: for what a model writes,
    which is shown as written rather than refused (see :func:`storable`)."""
    if storable(text):
        return text
    return _SURROGATE.sub("\ufffd", text.replace("\x00", "\ufffd"))


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


MAX_JSON_DEPTH = 32


def clean_json(field: str, value: Any, *, depth: int = 0) -> Any:
    """``value`` if a JSON column of every supported database stores it as given:
    objects with text keys, lists, text, finite numbers, booleans and null, at most
    ``MAX_JSON_DEPTH`` deep, no NUL (PostgreSQL's jsonb refuses ``\\u0000``) and no lone
    surrogates anywhere. Else :class:`InvalidInput` naming ``field``."""
    if depth > MAX_JSON_DEPTH:
        raise InvalidInput(field, f"is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(field, "must have text keys only")
            _clean_json_text(field, key)
            clean_json(field, item, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            clean_json(field, item, depth=depth + 1)
    elif isinstance(value, str):
        _clean_json_text(field, value)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidInput(field, "must not hold NaN or infinite numbers (not JSON)")
    elif value is not None and not isinstance(value, (bool, int)):
        raise InvalidInput(field, f"must be JSON (it holds a {type(value).__name__})")
    return value


def _clean_json_text(field: str, text: str) -> None:
    if "\x00" in text:
        raise InvalidInput(field, "must not contain NUL characters")
    if has_surrogate(text):
        raise InvalidInput(field, "must not contain lone surrogates (not valid Unicode text)")


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
