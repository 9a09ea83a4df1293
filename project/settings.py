"""Settings of the demo/dev project, driven by the environment.

No DATABASE_URL -> SQLite file; DATABASE_URL=postgres://... -> PostgreSQL (psycopg 3).
No REDIS_URL -> in-memory channel layer (one process); REDIS_URL -> channels-redis.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from project.env import (
    cache_from_url,
    channel_layers_from_url,
    database_from_url,
    env_bool,
    env_int,
    env_list,
    local_secret_key,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# Off unless DEBUG is set (``make demo`` sets it): a debug page shows settings and code.
DEBUG = env_bool("DEBUG", False)
# From the environment, or else a random key made once per checkout and kept in a file
# that git ignores: never a key published with the source.
SECRET_KEY = os.environ.get("SECRET_KEY") or local_secret_key(BASE_DIR / ".secret_key")

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
    "durable_sessions.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The pages' language: the one chosen with set_language, else the browser's.
    "django.middleware.locale.LocaleMiddleware",
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
# Shared by the processes when Redis is configured: the login throttle counts there.
CACHES = cache_from_url(os.environ.get("REDIS_URL"))

# Cookies travel over HTTPS only, unless DEBUG (``make demo`` on http://127.0.0.1).
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Behind a TLS-terminating proxy: SECURE_PROXY_SSL_HEADER=1 trusts its X-Forwarded-Proto.
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
# The demo's static files are served by the application itself unless SERVE_STATIC=0
# (a web server in front serves STATIC_ROOT after collectstatic).
SERVE_STATIC = env_bool("SERVE_STATIC", True)

# Failed logins allowed per username and client address in LOGIN_FAILURE_WINDOW seconds
# (and ten times as many per address for all usernames), then refused until it passes.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_FAILURE_WINDOW = env_int("LOGIN_FAILURE_WINDOW", 15 * 60)

DURABLE_SESSIONS = {
    # Declared so that the system checks can tell a multi-process deployment.
    "PROCESSES": int(os.environ.get("DS_PROCESSES", "1")),
    # The demo's page that opens a "continue on another device" link.
    "DEVICE_LINK_URL": "/chat/continue/{token}/",
    # Any other key as JSON, e.g. DURABLE_SESSIONS_JSON='{"RESYNC_INTERVAL": 1}'.
    **json.loads(os.environ.get("DURABLE_SESSIONS_JSON") or "{}"),
}
# The console's keys the same way, e.g. HANDOFF_CONSOLE_JSON='{"AUTO_ASSIGN": "least_busy"}'.
HANDOFF_CONSOLE = json.loads(os.environ.get("HANDOFF_CONSOLE_JSON") or "{}")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
# The languages the pages are offered in (both apps and the demo ship German).
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
# The demo's own catalog (templates/ and project/); the apps ship theirs in <app>/locale.
LOCALE_PATHS = [BASE_DIR / "project" / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# DS_LOG_FORMAT=json: one JSON object per line, with the session, run and seq it concerns.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"ds_context": {"()": "durable_sessions.observability.logs.ContextFilter"}},
    "formatters": {
        "json": {"()": "durable_sessions.observability.logs.JsonFormatter"},
        "text": {"format": "%(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["ds_context"],
            "formatter": "json" if os.environ.get("DS_LOG_FORMAT") == "json" else "text",
        }
    },
    "loggers": {
        "durable_sessions": {"handlers": ["console"], "level": os.environ.get("DS_LOG", "INFO")},
    },
}
