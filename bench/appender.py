"""Append rate of one process: ``python -m bench.appender durable|eventstream``.

``durable``: ``--sessions`` coroutines, one per session with a streaming reply, each
appending deltas through ``service.delta_writer`` as fast as they are committed (the
group commit writes what has queued up while the previous transaction ran).

``eventstream``: the same deltas, one ``send_event`` per delta on a channel per session,
from ``--threads`` threads (each with its own database connection), stored with
django-eventstream's model storage.

Prints one ``BENCH`` line: events appended within the timed window, per second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
import uuid
from typing import Any

from bench.protocol import reply
from bench.streams import FILLER

WARMUP = 1.0
TITLE = "bench-appender"


async def durable(sessions: int, seconds: float) -> dict[str, Any]:
    from channels.db import database_sync_to_async

    from bench import pool
    from bench.writer import DurableWriter
    from durable_sessions import service

    ids = await database_sync_to_async(pool.sessions)(sessions, title=TITLE)
    writer = DurableWriter()
    await writer.prepare(ids, fresh=False)  # a streaming reply in each session
    streams = [(uuid.UUID(s), writer.messages[s]) for s in ids]
    counted = [0]
    window = {"start": time.monotonic() + WARMUP}
    window["end"] = window["start"] + seconds

    async def one(session_id: uuid.UUID, message_id: int) -> None:
        while time.monotonic() < window["end"]:
            await service.delta_writer.append(session_id, message_id, FILLER)
            if window["start"] <= time.monotonic() < window["end"]:
                counted[0] += 1

    await asyncio.gather(*(one(s, m) for s, m in streams))
    for _, message_id in streams:
        await service.afinish_assistant_message(message_id)
    return {"events": counted[0], "seconds": seconds, "per_second": counted[0] / seconds}


def eventstream(sessions: int, seconds: float, threads: int) -> dict[str, Any]:
    from django.db import connection
    from django_eventstream import send_event

    run = uuid.uuid4().hex[:8]
    channels = [f"bench-{run}-{i}" for i in range(sessions)]
    for channel in channels:  # the first event of a channel also creates its counter
        send_event(channel, "message", {"text": FILLER})
    start = time.monotonic() + WARMUP
    end = start + seconds
    counts = [0] * threads

    def worker(index: int) -> None:
        mine = channels[index::threads]
        try:
            while True:
                for channel in mine:
                    if time.monotonic() >= end:
                        return
                    send_event(channel, "message", {"text": FILLER})
                    if start <= time.monotonic() < end:
                        counts[index] += 1
        finally:
            connection.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(seconds + 60)
    total = sum(counts)
    return {"events": total, "seconds": seconds, "per_second": total / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description="append rate of one process")
    parser.add_argument("kind", choices=["durable", "eventstream"])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    default = "project.settings" if args.kind == "durable" else "bench.eventstream.settings"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", default)
    import django

    django.setup()
    if args.kind == "durable":
        result = asyncio.run(durable(args.sessions, args.seconds))
    else:
        result = eventstream(args.sessions, args.seconds, args.threads)
    reply(result)


if __name__ == "__main__":
    main()
