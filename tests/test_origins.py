"""The websocket Origin check compares whole origins: scheme, host and port."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from durable_sessions.origins import OriginValidator


class Accepting(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()


async def handshake(
    origin: str | None,
    *,
    host: str = "127.0.0.1:8000",
    scheme: str = "ws",
    app: Any = None,
    path: str = "/ws/x/",
) -> bool:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    comm = WebsocketCommunicator(app or OriginValidator(Accepting.as_asgi()), path, headers)
    comm.scope["scheme"] = scheme
    comm.scope["user"] = AnonymousUser()
    connected, _ = await comm.connect()
    if connected:
        await comm.disconnect()
    return connected


@pytest.fixture
def trusted(settings: Any) -> Any:
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", ".example.com"]
    settings.CSRF_TRUSTED_ORIGINS = ["http://127.0.0.1:8000", "https://*.example.com"]
    return settings


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://127.0.0.1:8000", True),
        ("HTTP://127.0.0.1:8000", True),
        ("https://chat.example.com", True),
        ("https://chat.example.com:443", True),
        ("http://127.0.0.1:9999", False),
        ("https://127.0.0.1", False),
        ("https://127.0.0.1:8000", False),
        ("http://localhost:8000", False),
        ("http://chat.example.com", False),
        ("https://chat.example.com:8443", False),
        ("https://example.com.evil", False),
        ("http://evil.example", False),
        ("null", False),
        ("", False),
        ("http://127.0.0.1:99999", False),
        ("chrome-extension://127.0.0.1", False),
        (None, False),
    ],
)
async def test_configured_origins_are_compared_whole(trusted, origin, allowed):
    assert await handshake(origin, host="chat.example.org") is allowed


@pytest.mark.parametrize(
    ("origin", "host", "scheme", "allowed"),
    [
        ("http://127.0.0.1:9000", "127.0.0.1:9000", "ws", True),
        ("http://localhost:9000", "localhost:9000", "ws", True),
        ("https://127.0.0.1:9000", "127.0.0.1:9000", "wss", True),
        ("http://127.0.0.1:9000", "127.0.0.1:9000", "wss", False),
        ("https://127.0.0.1:9000", "127.0.0.1:9000", "ws", False),
        ("http://127.0.0.1:9001", "127.0.0.1:9000", "ws", False),
        # Its own origin counts only for a host of ALLOWED_HOSTS.
        ("http://evil.example:9000", "evil.example:9000", "ws", False),
    ],
)
async def test_the_servers_own_origin_is_allowed(trusted, origin, host, scheme, allowed):
    assert await handshake(origin, host=host, scheme=scheme) is allowed


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://127.0.0.1:9999", True),
        ("https://127.0.0.1", True),
        ("http://evil.example", False),
        (None, False),
    ],
)
async def test_without_configured_origins_any_port_of_an_allowed_host_passes(
    settings, origin, allowed
):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    settings.CSRF_TRUSTED_ORIGINS = []
    assert await handshake(origin) is allowed


async def test_explicit_origins_replace_the_setting(trusted):
    app = OriginValidator(Accepting.as_asgi(), ["https://app.example.net"])
    assert await handshake("https://app.example.net", app=app)
    assert not await handshake("http://127.0.0.1:8000", host="x.example.org", app=app)


@pytest.fixture
def demo_application() -> Iterator[Any]:
    # Imported for this test only: the embedded-runner check (W008) tells whether an
    # import of the ASGI module builds an EmbeddedRunner, so leave none cached behind.
    cached = "project.asgi" in sys.modules
    from project.asgi import application

    yield application
    if not cached:
        sys.modules.pop("project.asgi", None)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("origin", "path", "connected", "code"),
    [
        ("http://127.0.0.1:9999", "/ws/console/", False, None),
        ("https://127.0.0.1", "/ws/console/", False, None),
        ("http://127.0.0.1:8000", "/ws/nowhere/", True, 4404),
        ("http://127.0.0.1:8000", "/ws/console/", True, 4403),
    ],
)
async def test_the_demo_checks_origins_and_unknown_paths(
    settings, demo_application, origin, path, connected, code
):
    settings.CSRF_TRUSTED_ORIGINS = ["http://127.0.0.1:8000"]
    comm = WebsocketCommunicator(
        demo_application, path, [(b"host", b"127.0.0.1:8000"), (b"origin", origin.encode())]
    )
    opened, _ = await comm.connect()
    assert opened is connected
    if connected:
        closed = await comm.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": code}
    await comm.wait()
