"""Settings for django-eventstream: its app and model storage, in a database of its own.

Events are stored with ``DjangoModelStorage`` (so that clients can resume) and published
to the same Redis as the durable path's wake-ups (``EVENTSTREAM_REDIS``).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from project.env import database_from_url

SECRET_KEY = os.environ.get("SECRET_KEY", "bench-eventstream")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_eventstream",
]
DATABASES = {"default": database_from_url(os.environ["DATABASE_URL"], Path("unused.sqlite3"))}
EVENTSTREAM_STORAGE_CLASS = "django_eventstream.storage.DjangoModelStorage"
_redis = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/5"))
EVENTSTREAM_REDIS = {
    "host": _redis.hostname or "127.0.0.1",
    "port": _redis.port or 6379,
    "db": int(_redis.path.lstrip("/") or 0),
}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
