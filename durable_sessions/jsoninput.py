"""Decoding of JSON from clients: bounded nesting and strict numbers.

Python's decoder recurses once per level of nesting: a 2 KB body of ``[`` reaches the
interpreter's recursion limit. Every body and frame the app accepts is a flat object, so
nesting is bounded well below it, before the decoder runs.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INNERMOST = re.compile(r"\[\]|\{\}")


class JsonInputError(ValueError):
    """Text that is not JSON the app accepts; the message says why, never echoing it."""


def _refuse_constant(name: str) -> Any:
    raise JsonInputError(f"{name} is not a JSON number")


def _too_deep(text: str, max_depth: int) -> bool:
    """Whether ``text`` nests arrays/objects deeper than ``max_depth`` (or they do not pair).

    Strings are removed, then each round removes the innermost pairs of brackets: a
    document of depth d is empty after d rounds. Every step is a regex pass in C.
    """
    if text.count("[") + text.count("{") <= max_depth:
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(max_depth):
        if not brackets:
            return False
        brackets = _INNERMOST.sub("", brackets)
    return bool(brackets)


def loads(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of ``text``; :class:`JsonInputError` if it is not JSON, nests deeper
    than ``max_depth``, or uses ``NaN``/``Infinity`` (not JSON, though Python writes them).

    A number too large for a float (``1e400``) decodes to infinity: fields that want a
    finite number refuse it by name.
    """
    if _too_deep(text, max_depth):
        raise JsonInputError(f"malformed, or nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except JsonInputError:
        raise
    except (ValueError, RecursionError) as exc:
        reason = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise JsonInputError(reason) from None
