"""The coalescing buffer: chunks become one delta per interval or per size, no I/O."""

from __future__ import annotations

import pytest

from durable_sessions.runtime.coalescer import Coalescer

# Neither the database nor a channel layer backend: the PostgreSQL + Redis pass skips it.
pytestmark = pytest.mark.neutral


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_chunks_wait_for_the_interval_then_leave_as_one_text():
    clock = Clock()
    buffer = Coalescer(0.04, 256, clock)
    assert not buffer and buffer.deadline is None
    assert buffer.add("Hel") is False and buffer.add("lo") is False
    assert buffer.deadline == 100.04  # counted from the first chunk, not the last
    clock.now = 100.03
    assert not buffer.due()
    clock.now = 100.04
    assert buffer.due()
    assert buffer.take() == "Hello"
    assert not buffer and buffer.deadline is None and not buffer.due()


def test_a_full_buffer_asks_to_be_flushed_at_once():
    buffer = Coalescer(10.0, 5, Clock())
    assert buffer.add("abc") is False
    assert buffer.add("de") is True
    assert buffer.take() == "abcde"
    assert buffer.add("f") is False  # a fresh count after a flush


def test_empty_chunks_are_ignored():
    buffer = Coalescer(0.04, 1, Clock())
    assert buffer.add("") is False
    assert not buffer and buffer.deadline is None
