"""ASGI application of the bare relay: ``/ws/relay/<key>/`` joins group ``relay.<key>``."""

from __future__ import annotations

import json
import os
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.relay.settings")
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

GROUP_PREFIX = "relay."
MESSAGE_TYPE = "relay.events"


def group_name(key: str) -> str:
    """The group of one stream (the relay's counterpart of a session)."""
    return GROUP_PREFIX + key.replace("-", "")


class RelayConsumer(AsyncWebsocketConsumer):
    """Forwards each group message's events to the socket as JSON text frames."""

    async def connect(self) -> None:
        self.group = group_name(self.scope["url_route"]["kwargs"]["key"])
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # As the durable consumer does: no per-message database clean-up (a thread hop)
        # for messages that never touch the database.
        if message.get("type") == MESSAGE_TYPE:
            await self.relay_events(message)
        else:
            await super().dispatch(message)

    async def relay_events(self, message: dict[str, Any]) -> None:
        for frame in message["events"]:
            await self.send(text_data=json.dumps(frame, separators=(",", ":")))


application = ProtocolTypeRouter(
    {"websocket": URLRouter([path("ws/relay/<str:key>/", RelayConsumer.as_asgi())])}
)
