"""The wire text of live events, encoded once per process for all connections of a session.

Every connection of a session gets the same wake-up, each as its own decoded copy, and
used to encode each event for itself: three devices, three encodings of one frame. The
text of the newest event encoded for a session is kept here, and a connection whose
frame is equal to it sends that text. Equal frames encode to the same text, so what a
client receives is unchanged; the comparison costs a small fraction of an encoding.

Texts are kept for about a second only (the connections of a session handle a wake-up
within milliseconds of each other), so an idle session holds none.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from durable_sessions import wire

# Seconds after the first text is kept until all are dropped.
KEEP_SECONDS = 1.0


class LiveTexts:
    """The text of the newest live event encoded for each session (by group name)."""

    def __init__(self) -> None:
        self._texts: dict[str, tuple[dict[str, Any], str]] = {}
        self._until = 0.0  # time.monotonic() at which the texts kept are dropped

    def text(self, group: str, frame: dict[str, Any]) -> str:
        """``frame``'s wire text (``wire.dumps``), encoded again only if it is not the
        newest event encoded for ``group``."""
        kept = self._texts.get(group)
        if kept is not None and kept[0] == frame:
            return kept[1]
        text = wire.dumps(frame)
        now = time.monotonic()
        if now >= self._until:  # also when the loop that was to clear them is gone
            self._texts.clear()
            self._until = now + KEEP_SECONDS
            asyncio.get_running_loop().call_later(KEEP_SECONDS, self._texts.clear)
        self._texts[group] = (frame, text)
        return text

    def __len__(self) -> int:
        return len(self._texts)


live_texts = LiveTexts()
