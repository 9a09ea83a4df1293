"""The demo project's ASGI application plus a writer inside the server process.

Used only with the in-memory channel layer, where a writer in another process could not
reach the server's groups: this is the one-process deployment, whose agent runs are
embedded in the server. ``POST /bench/writer/`` takes one :class:`bench.writer.DurableWriter`
command as JSON and answers when it is done. Serve with
``daphne bench.inproc:application``; everything else goes to ``project.asgi``.
"""

from __future__ import annotations

import json
from typing import Any

from bench.writer import DurableWriter
from project.asgi import application as project_application

CONTROL_PATH = "/bench/writer/"
_writer = DurableWriter()


async def _control(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    try:
        status, answer = 200, await _writer.handle(json.loads(body))
    except Exception as exc:
        status, answer = 500, {"error": f"{type(exc).__name__}: {exc}"}
    payload = json.dumps(answer).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Route the writer's control path here, everything else to the project."""
    if scope["type"] == "http" and scope["path"] == CONTROL_PATH and scope["method"] == "POST":
        await _control(scope, receive, send)
        return
    await project_application(scope, receive, send)
