"""Settings of the bare relay: Channels and its layer, nothing else.

The layer comes from the same environment variables as the demo project's
(``REDIS_URL``, ``REDIS_LAYER``), so both run on the same layer.
"""

from __future__ import annotations

import os

from project.env import channel_layers_from_url

SECRET_KEY = os.environ.get("SECRET_KEY", "bench-relay")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = ["daphne", "channels"]
ASGI_APPLICATION = "bench.relay.asgi.application"
CHANNEL_LAYERS = channel_layers_from_url(os.environ.get("REDIS_URL"))
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
