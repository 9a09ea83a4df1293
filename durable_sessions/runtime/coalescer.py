"""Coalescing of an agent's text: many small chunks become one durable delta.

An LLM streams a token every few milliseconds; writing each as an event would cost a
transaction per token. The buffer holds text until ``interval`` seconds passed since
its first chunk, or until ``max_chars`` are held, whichever comes first.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Coalescer:
    """Buffers text chunks and says when they must be flushed (no I/O: the caller writes)."""

    def __init__(
        self, interval: float, max_chars: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.max_chars = max_chars
        self._clock = clock
        self._parts: list[str] = []
        self._size = 0
        self.deadline: float | None = None  # when the held text must be written

    def __bool__(self) -> bool:
        return bool(self._parts)

    def add(self, text: str) -> bool:
        """Hold ``text``; True when the buffer is full and must be flushed now."""
        if not text:
            return False
        self._parts.append(text)
        self._size += len(text)
        if self.deadline is None:
            self.deadline = self._clock() + self.interval
        return self._size >= self.max_chars

    def due(self) -> bool:
        """Whether the held text waited its interval."""
        return self.deadline is not None and self._clock() >= self.deadline

    def take(self) -> str:
        """The held text as one string; the buffer is empty afterwards."""
        text = "".join(self._parts)
        self._parts.clear()
        self._size, self.deadline = 0, None
        return text
