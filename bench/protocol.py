"""The line protocol between the runner and its load processes.

The runner writes one JSON command a line on the child's stdin; the child answers each
with one line on stdout, prefixed with ``BENCH `` so that stray output cannot be
mistaken for a reply. ``{"cmd": "quit"}`` or the end of stdin ends the child.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from bench.procs import REPLY_PREFIX

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


def reply(payload: dict[str, Any]) -> None:
    """Write one reply line."""
    sys.stdout.write(REPLY_PREFIX + json.dumps(payload) + "\n")
    sys.stdout.flush()


async def serve(handle: Handler) -> None:
    """Answer commands until ``quit`` (or a handler returning None) or end of input."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        if command.get("cmd") == "quit":
            reply({"ok": True})
            return
        try:
            answer = await handle(command)
        except Exception as exc:
            reply({"error": f"{type(exc).__name__}: {exc}"})
            continue
        if answer is None:
            return
        reply(answer)
