"""Parsing and validation of client websocket frames (see docs/protocol.md)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from durable_sessions.app_settings import ds_settings
from durable_sessions.errors import error_payload
from durable_sessions.jsoninput import JsonInputError, loads
from durable_sessions.service.validation import has_surrogate, printable

# Frame type -> {field: (required, allowed types)}; "ref" is allowed on every frame.
CLIENT_FRAMES: dict[str, dict[str, tuple[bool, tuple[type, ...]]]] = {
    "message.send": {
        "content": (True, (str,)),
        "client_id": (True, (str,)),
        "mode": (False, (str,)),
    },
    "handoff.request": {"reason": (False, (str,))},
    "reply.cancel": {},
    "session.rate": {"score": (True, (int,)), "comment": (False, (str,))},
    "ping": {},
    "typing": {"state": (True, (str,)), "private": (False, (bool,))},
    "message.edit": {
        "message_id": (True, (int,)),
        "content": (True, (str,)),
        "client_id": (True, (str,)),
    },
    "reply.regenerate": {"message_id": (True, (int,))},
    "branch.switch": {"message_id": (True, (int,))},
    "approval.answer": {
        "approval_id": (True, (str,)),
        "approved": (True, (bool,)),
        "reason": (False, (str,)),
        "client_id": (True, (str,)),
    },
}
# Allowed values of string fields.
FIELD_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("typing", "state"): ("start", "stop"),
    ("message.send", "mode"): ("queue", "steer", "interrupt"),
}
MAX_REF_CHARS = 64
# A frame too large to decode may still name its ref near the start (clients put it
# before the content): looked for in this many leading characters, so that the error
# can carry it and the client stop resending.
REF_SCAN_CHARS = 512
_REF_STRING = rf'"(?:[^"\\]|\\.){{0,{6 * MAX_REF_CHARS}}}"'  # \uXXXX is 6 characters
_LEADING_REF = re.compile(rf'"ref"\s*:\s*({_REF_STRING}|-?[0-9]{{1,18}})(?=\s*[,}}])')


class FrameError(Exception):
    """A frame the server refuses; sent back as an error frame, nothing is stored."""

    def __init__(self, code: str, message: str, *, ref: Any = None, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.field = field

    def as_frame(self) -> dict[str, Any]:
        # A client's key may hold a lone surrogate, which a UTF-8 text frame cannot carry.
        field = printable(self.field) if self.field else None
        return {
            "type": "error",
            **error_payload(self.code, printable(self.message), field=field, ref=self.ref),
        }


@dataclass(frozen=True)
class Frame:
    type: str
    fields: dict[str, Any]
    ref: str | int | None


def _ref(data: dict[str, Any]) -> str | int | None:
    ref = data.get("ref")
    if ref is None:
        return None
    if isinstance(ref, bool) or not isinstance(ref, (str, int)):
        raise FrameError("invalid_field", "ref: must be a string or an integer", field="ref")
    if isinstance(ref, str) and len(ref) > MAX_REF_CHARS:
        raise FrameError("invalid_field", f"ref: longer than {MAX_REF_CHARS}", field="ref")
    if isinstance(ref, str) and has_surrogate(ref):
        # Not echoed (it cannot be sent back), hence not an invalid_field with this ref.
        raise FrameError("bad_frame", "ref: not valid Unicode text (a lone surrogate)", field="ref")
    return ref


def leading_ref(text: str) -> str | int | None:
    """The ref of a frame too large to decode, when it comes early; else None."""
    match = _LEADING_REF.search(text, 0, REF_SCAN_CHARS)
    if match is None:
        return None
    try:
        return _ref({"ref": json.loads(match.group(1))})
    except (ValueError, FrameError):
        return None


def parse(text: str | None, binary: bytes | None = None) -> Frame:
    """Decode and validate one client frame or raise :class:`FrameError`."""
    if text is None:
        raise FrameError("bad_frame", "binary frames are not supported; send JSON text")
    limit = ds_settings.MAX_FRAME_BYTES
    # Characters are at least a byte each: most frames skip the encoding.
    if len(text) > limit or len(text.encode("utf-8", "surrogatepass")) > limit:
        raise FrameError("too_large", f"frame is larger than {limit} bytes", ref=leading_ref(text))
    try:
        data = loads(text)
    except JsonInputError as exc:
        raise FrameError("bad_json", f"frame is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FrameError("bad_frame", "frame must be a JSON object")
    ref = _ref(data)
    type_ = data.get("type")
    if not isinstance(type_, str):
        raise FrameError("invalid_field", "type: missing or not a string", ref=ref, field="type")
    spec = CLIENT_FRAMES.get(type_)
    if spec is None:
        known = ", ".join(sorted(CLIENT_FRAMES))
        raise FrameError(
            "unknown_type", f"unknown frame type {type_!r}; known: {known}", ref=ref, field="type"
        )
    fields: dict[str, Any] = {}
    for name in data:
        if name not in spec and name not in ("type", "ref"):
            raise FrameError(
                "invalid_field", f"{name}: unexpected field for {type_}", ref=ref, field=name
            )
    for name, (required, types) in spec.items():
        if name not in data:
            if required:
                raise FrameError("invalid_field", f"{name}: missing", ref=ref, field=name)
            continue
        value = data[name]
        # JSON true is no number: bool is an int to Python only.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = " or ".join({"int": "integer"}.get(t.__name__, t.__name__) for t in types)
            article = "an" if expected[0] in "aeiou" else "a"
            raise FrameError(
                "invalid_field", f"{name}: must be {article} {expected}", ref=ref, field=name
            )
        if isinstance(value, str) and has_surrogate(value):
            raise FrameError(
                "invalid_field",
                f"{name}: not valid Unicode text (a lone surrogate)",
                ref=ref,
                field=name,
            )
        choices = FIELD_CHOICES.get((type_, name))
        if choices is not None and value not in choices:
            allowed = " or ".join(repr(c) for c in choices)
            raise FrameError("invalid_field", f"{name}: must be {allowed}", ref=ref, field=name)
        fields[name] = value
    return Frame(type_, fields, ref)


class RateLimiter:
    """Token bucket per connection: RATE_LIMIT_FRAMES per RATE_LIMIT_WINDOW seconds."""

    __slots__ = ("_capacity", "_rate", "_stamp", "_tokens")

    def __init__(self) -> None:
        self._capacity: float = ds_settings.RATE_LIMIT_FRAMES
        self._rate = self._capacity / ds_settings.RATE_LIMIT_WINDOW
        self._tokens = self._capacity
        self._stamp = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
