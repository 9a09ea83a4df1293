"""Settings of the demo/dev project, driven by the environment.

No DATABASE_URL -> SQLite file; DATABASE_URL=postgres://... -> PostgreSQL (psycopg 3).
No REDIS_URL -> in-memory channel layer (one process); REDIS_URL -> channels-redis.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from project.env import channel_layers_from_url, database_from_url, env_bool, env_list

BASE_DIR = Path(__file__).resolve().parent.parent

_DEV_SECRET = "django-insecure-dev-only-change-me"
SECRET_KEY = os.environ.get("SECRET_KEY") or _DEV_SECRET
DEBUG = env_bool("DEBUG", True)
if SECRET_KEY == _DEV_SECRET:
    warnings.warn(
        "SECRET_KEY is not set: using the development key. Set SECRET_KEY in production.",
        stacklevel=1,
    )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list(
    "CSRF_TRUSTED_ORIGINS", ["http://127.0.0.1:8000", "http://localhost:8000"]
)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    # Token authentication for the REST API (optional in a host project).
    "rest_framework.authtoken",
    "durable_sessions",
    "handoff_console",
    "project",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

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
    "default": database_from_url(
        os.environ.get("DATABASE_URL"),
        Path(os.environ.get("SQLITE_PATH", BASE_DIR / "db.sqlite3")),
    )
}
CHANNEL_LAYERS = channel_layers_from_url(os.environ.get("REDIS_URL"))

DURABLE_SESSIONS = {
    # Declared so that the system checks can tell a multi-process deployment.
    "PROCESSES": int(os.environ.get("DS_PROCESSES", "1")),
    # Any other key as JSON, e.g. DURABLE_SESSIONS_JSON='{"RESYNC_INTERVAL": 1}'.
    **json.loads(os.environ.get("DURABLE_SESSIONS_JSON") or "{}"),
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "durable_sessions": {"handlers": ["console"], "level": os.environ.get("DS_LOG", "INFO")},
    },
}
