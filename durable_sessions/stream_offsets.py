"""Offsets of the Durable Streams protocol: ``"<seq>_<bytes>"``, each part 16 digits.

Fixed width makes text order the stream's order. A generic stream's offset after its
append ``seq`` is ``(seq, its length in bytes)``; a session's offset after event ``seq``
is ``(seq, 0)``. The sentinels ``-1`` (the start) and ``now`` (the tail) are never minted.
"""

from __future__ import annotations

import re

START = "-1"
NOW = "now"
_TOKEN = re.compile(r"(\d{1,19})_(\d{1,19})")
# Larger numbers fit no database integer column: such a token is not an offset.
_LARGEST = 2**63 - 1


def format_offset(seq: int, end: int = 0) -> str:
    return f"{seq:016d}_{end:016d}"


ZERO = format_offset(0, 0)


def parse_offset(token: str) -> tuple[int, int] | None:
    """``(seq, bytes)`` of an offset token, or None when it is not one."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    seq, end = int(match.group(1)), int(match.group(2))
    if seq > _LARGEST or end > _LARGEST:
        return None
    return seq, end
