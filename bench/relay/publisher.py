"""The relay's writer: ``python -m bench.relay.publisher``, a process of its own.

Answers ``stream`` and ``spread`` commands like :mod:`bench.writer`, but sends each
stamped delta with a plain ``group_send``: nothing stored, a counter per stream for the
``seq``.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from typing import Any

from bench.streams import paced, spread, stamped_text


class RelayPublisher:
    """Numbers each stream's deltas and sends them to its group."""

    def __init__(self) -> None:
        self.seqs: dict[str, int] = {}

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        from channels.layers import get_channel_layer

        from bench.relay.asgi import MESSAGE_TYPE, group_name

        if command["cmd"] not in ("stream", "spread"):
            raise ValueError(f"unknown command {command['cmd']!r}")
        layer = get_channel_layer()
        keys: list[str] = command["sessions"]
        groups = [group_name(key) for key in keys]

        async def send(index: int) -> int:
            key = keys[index]
            seq = self.seqs.get(key, 0) + 1
            self.seqs[key] = seq
            frame = {
                "type": "message.delta",
                "seq": seq,
                "at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "data": {"message_id": index + 1, "text": stamped_text()},
            }
            await layer.group_send(groups[index], {"type": MESSAGE_TYPE, "events": [frame]})
            return seq

        if command["cmd"] == "spread":  # one delta to each stream, spread over some seconds
            result = await spread(len(keys), send, seconds=float(command["seconds"]))
        else:
            result = await paced(
                len(keys),
                send,
                rate_hz=float(command["rate_hz"]),
                duration=float(command["duration"]),
            )
        last = result.pop("last")
        result["final"] = {k: s for k, s in zip(keys, last, strict=True) if s is not None}
        return result


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.relay.settings")
    import django

    django.setup()
    from bench.protocol import serve

    asyncio.run(serve(RelayPublisher().handle))


if __name__ == "__main__":
    main()
