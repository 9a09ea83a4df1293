"""Continuing a cut text part, for any cut text and any new output in any chunks: the
reader never reads text twice (property-based)."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from durable_sessions.runtime import resumption
from durable_sessions.runtime.coalescer import Coalescer
from tests.fuzzing import FUZZ

words = st.text(st.sampled_from("ab é😀"), max_size=12)


@dataclass
class FakeWriter:
    """What :mod:`resumption` uses of a ReplyWriter, without a database."""

    cut: resumption.CutPart | None
    part: Any = "cut part"
    buffer: Coalescer = field(default_factory=lambda: Coalescer(1.0, 100))
    announced: list[str] = field(default_factory=list)
    what: str = "run 1"

    async def announce(self, status: str, tool: str | None) -> None:
        self.announced.append(status)


def reader_text(cut: str, chunks: list[str], monkeypatch) -> tuple[str, bool]:
    """What a reader reads once the new output ``chunks`` went through the continuation,
    and whether the cut part was ended as cut."""
    ended: list[int] = []
    monkeypatch.setattr(resumption.parts, "cut_part", lambda pk: ended.append(pk))
    writer = FakeWriter(resumption.CutPart(7, cut))

    async def feed() -> str:
        written = ""
        for chunk in chunks:
            if not chunk:
                continue  # the writer skips empty chunks
            written += await resumption.continue_text(writer, chunk) if writer.cut else chunk
        if writer.cut is not None:
            await resumption.settle(writer)
        return written

    written = asyncio.run(feed())
    return ("" if ended else cut) + written, bool(ended)


@FUZZ
@given(cut=words, new=words, cuts=st.lists(st.integers(0, 12), max_size=5))
def test_a_continued_answer_is_read_once_whatever_the_chunks(cut, new, cuts, monkeypatch):
    bounds = sorted({0, len(new), *(c for c in cuts if c <= len(new))})
    chunks = [new[a:b] for a, b in itertools.pairwise(bounds)]
    read, restarted = reader_text(cut, chunks, monkeypatch)
    if new.startswith(cut):
        assert (read, restarted) == (new, False)  # continued in place
    elif cut.startswith(new):
        assert (read, restarted) == (cut, False)  # said again in part: the cut text stays
    else:
        assert (read, restarted) == (new, True)  # restarted: only the new text is read
