"""A channel layer that loses group messages, like channels-redis past its capacity."""

from __future__ import annotations

import random

from channels.layers import InMemoryChannelLayer, channel_layers


class LossyChannelLayer(InMemoryChannelLayer):
    """Drops each group message with probability ``drop`` (seeded, so runs repeat)."""

    def __init__(self, drop: float = 0.5, seed: int = 7, **kwargs):
        super().__init__(**kwargs)
        self.drop = drop
        self.random = random.Random(seed)
        self.dropped = 0

    async def group_send(self, group, message):
        if message.get("type") == "session.events" and self.random.random() < self.drop:
            self.dropped += 1
            return
        await super().group_send(group, message)


def use_lossy_layer(settings, drop: float) -> None:
    """Make the test's default channel layer a :class:`LossyChannelLayer`."""
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "tests.lossy_layer.LossyChannelLayer", "CONFIG": {"drop": drop}}
    }
    channel_layers.backends.clear()
