"""A lean client of the AI SDK answer stream (``GET ai/chat/<id>/stream``, SSE).

HTTP/1.1 over a plain asyncio connection, reading the chunked body as it comes: a
thousand such streams cost the load-generator processes little, so what is measured is
the server. Only what the benchmark needs: the status, the body's pieces, and the
writer's stamps at the start of each ``text-delta``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

READ_LIMIT = 2**24
EVENT_END = b"\n\n"
TEXT_DELTA = b'"type":"text-delta"'


@dataclass
class AnswerStream:
    """One open answer stream: its connection, and the body read but not yet parsed."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    chunked: bool
    pending: bytes = b""

    async def piece(self) -> bytes:
        """The next piece of the body (one chunk); empty at its end."""
        if not self.chunked:
            return await self.reader.read(65536)
        size = int((await self.reader.readline()).split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            return b""
        data = await self.reader.readexactly(size)
        await self.reader.readexactly(2)  # the CRLF after each chunk
        return data

    def stamps(self, data: bytes) -> list[float]:
        """The stamps of the ``text-delta`` chunks completed by ``data``, in order."""
        self.pending += data
        events, _, self.pending = self.pending.rpartition(EVENT_END)
        found: list[float] = []
        if not events:
            return found
        for event in events.split(EVENT_END):
            if TEXT_DELTA not in event or not event.startswith(b"data: {"):
                continue
            delta = json.loads(event[len(b"data: ") :])["delta"]
            head, _, _ = delta.partition(" ")
            try:
                found.append(float(head))
            except ValueError:
                continue
        return found

    def close(self) -> None:
        self.writer.close()


async def open_answer_stream(url: str, headers: dict[str, str]) -> tuple[AnswerStream, bytes]:
    """GET ``url``; the stream and the first piece of its body (the answer's ``start``,
    sent after the server's first read of the log: the stream has caught up)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port, limit=READ_LIMIT)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        # As the AI SDK's fetch asks (DRF answers 406 to "Accept: text/event-stream").
        lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", "Accept: */*"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        status = await reader.readline()
        if status.split(b" ", 2)[1:2] != [b"200"]:
            raise RuntimeError(f"{url} answered {status.decode(errors='replace').strip()!r}")
        chunked = False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        stream = AnswerStream(reader, writer, chunked)
        first = await stream.piece()
        if not first:
            raise RuntimeError(f"{url} ended before its first chunk")
        return stream, first
    except BaseException:
        writer.close()
        raise
