"""A stand-alone writer process that streams one assistant reply, as an agent worker does.

Run as ``python -m tests.stream_writer SESSION_ID --chunks N`` with the environment of the
server processes (``tests.live.server_env``): same database, same channel layer. It writes
through the session service only (start, N deltas, finish), so its events reach clients
exactly as a real agent's would: committed first, then published as wake-ups.

``--pause-after K`` stops after the K-th delta, prints a ``paused`` line and waits for a line
on stdin, so that a test can act (kill a server) at a known point of the stream and know
that everything after it is written while it acts. The last line on stdout is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

OVER_CAPACITY_LOGGER = "channels_redis.core"


def chunks(count: int) -> list[str]:
    """The deltas of a stream of ``count`` chunks; the tests rebuild the text from this."""
    return [f"c{i:04d} " for i in range(count)]


class _DropCounter(logging.Handler):
    """Counts the group messages channels-redis refused because a channel was full."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        # channels-redis logs "%s of %s channels over capacity in group %s".
        if "over capacity" in record.msg and record.args:
            self.dropped += int(record.args[0])  # type: ignore[index]


def _emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("session_id")
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between deltas")
    parser.add_argument("--pause-after", type=int, default=0, help="wait for stdin after K")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from durable_sessions import service

    counter = _DropCounter()
    redis_logger = logging.getLogger(OVER_CAPACITY_LOGGER)
    redis_logger.addHandler(counter)
    redis_logger.setLevel(logging.INFO)

    reply = service.start_assistant_message(args.session_id)
    _emit({"started": reply.seq, "message_id": reply.pk})
    last = reply.seq
    for number, chunk in enumerate(chunks(args.chunks), start=1):
        last = service.append_delta(reply, chunk)
        if number == args.pause_after:
            _emit({"paused": last})
            sys.stdin.readline()  # EOF (the test went away) resumes as well
        elif args.delay:
            time.sleep(args.delay)
    last = service.finish_assistant_message(reply)
    _emit({"first_seq": reply.seq, "last_seq": last, "dropped": counter.dropped})
    return 0


if __name__ == "__main__":
    sys.exit(main())
