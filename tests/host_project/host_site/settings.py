"""Settings of a product that adds durable sessions and the handoff console.

Everything here is what a team writes by hand when it integrates the package; nothing is
imported from the package's own demo project. The SQLite file and collected static files
go to the directory named by ``HOST_PROJECT_DATA_DIR`` (a temporary directory by default).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("HOST_PROJECT_DATA_DIR") or tempfile.gettempdir())

SECRET_KEY = os.environ.get("SECRET_KEY") or "host-project-insecure-test-key"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]
INSTALLED_APPS += ["channels", "rest_framework", "durable_sessions", "handoff_console"]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "host_site.urls"
ASGI_APPLICATION = "host_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "host.sqlite3",
        # Take the write lock at BEGIN so that concurrent appends wait for each other
        # instead of failing with "database is locked" (system check durable_sessions.W006).
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
    }
}

# One server process: the in-memory layer is enough to wake this process's connections.
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The agent runs inside the server process (the default "embedded" runner), which is right
# for one process; the adapter and the agent are the product's own classes.
DURABLE_SESSIONS = {
    "ADAPTER": "host_site.adapters.HostSessionAdapter",
    "AGENT": "host_site.agents.EchoAgent",
}

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/console/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# With DEBUG off Django mails request errors instead of printing them; print them so that
# a failure shows up in the server log.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
