"""The ``DURABLE_SESSIONS`` setting: defaults in one place, validated, reloaded on change.

Read it as ``from durable_sessions.app_settings import ds_settings`` and
``ds_settings.FLUSH_INTERVAL_MS``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

SETTING_NAME = "DURABLE_SESSIONS"

DEFAULTS: dict[str, Any] = {
    # Class path of the adapter that decides access and names people.
    "ADAPTER": "durable_sessions.adapter.SessionAdapter",
    # Permission that makes a user an operator (able to open any session).
    "OPERATOR_PERMISSION": "handoff_console.use_console",
    # Whether staff users count as operators without the permission.
    "STAFF_ARE_OPERATORS": True,
    # Largest client websocket frame accepted, in bytes.
    "MAX_FRAME_BYTES": 64 * 1024,
    # Longest message text accepted, in characters.
    "MAX_MESSAGE_CHARS": 16_000,
    # Client frames allowed per connection within RATE_LIMIT_WINDOW seconds.
    "RATE_LIMIT_FRAMES": 30,
    "RATE_LIMIT_WINDOW": 10.0,
    # Events read per query when replaying a session to a client.
    "REPLAY_PAGE_SIZE": 1000,
    # Seconds between the per-process check that no connection has missed an event
    # (the channel layer may drop wake-ups; the database never does).
    "RESYNC_INTERVAL": 2.0,
    # Prefix of channel-layer group names.
    "GROUP_PREFIX": "ds",
    # Server processes this deployment runs (for the system checks).
    "PROCESSES": 1,
    # --- agent runtime ---
    # Class path of the agent, and keyword arguments for its constructor.
    "AGENT": "durable_sessions.agents.demo.DemoAgent",
    "AGENT_OPTIONS": {},
    # "embedded": runs execute inside the server process (one-process deployments);
    # "worker": only `manage.py run_agents` processes execute them.
    "RUNNER": "embedded",
    # Deltas are coalesced and written as one event every FLUSH_INTERVAL_MS, or as soon
    # as FLUSH_MAX_CHARS are buffered.
    "FLUSH_INTERVAL_MS": 40,
    "FLUSH_MAX_CHARS": 256,
    # A running agent renews its lease every HEARTBEAT_INTERVAL seconds; a lease older
    # than LEASE_TIMEOUT seconds means the process running it died.
    "LEASE_TIMEOUT": 15.0,
    "HEARTBEAT_INTERVAL": 3.0,
    # Move a session whose agent crashed to the human queue.
    "ESCALATE_ON_CRASH": True,
    # Fail a reply when the agent produces nothing for this many seconds.
    "AGENT_IDLE_TIMEOUT": 60.0,
    # Messages of history given to the agent.
    "HISTORY_LIMIT": 50,
    # Runs one process executes at once.
    "MAX_CONCURRENT_RUNS": 100,
    # Seconds between sweeps for pending runs whose wake-up was lost.
    "RUN_SWEEP_INTERVAL": 2.0,
    # Channel-layer channel on which new runs are announced to workers.
    "RUN_CHANNEL": "ds-agent-runs",
    # --- presence ---
    # "auto" (Redis when the channel layer is channels-redis, else memory), "memory"
    # (one process) or "redis".
    "PRESENCE_BACKEND": "auto",
    # Redis URL for presence; empty: the channel layer's first host.
    "PRESENCE_REDIS_URL": "",
    # A connection refreshes its presence every PRESENCE_HEARTBEAT seconds; one not
    # refreshed for PRESENCE_TTL seconds (its process died) is gone.
    "PRESENCE_HEARTBEAT": 15.0,
    "PRESENCE_TTL": 40.0,
    # Seconds between checks for expired presence and typing, per process.
    "PRESENCE_SWEEP": 2.0,
    # "Typing" ends this many seconds after the last start, unless renewed.
    "TYPING_TIMEOUT": 15.0,
}

# Expected type of each key (bool is checked before int, since bool is an int).
_TYPES: dict[str, tuple[type, ...]] = {
    "ADAPTER": (str,),
    "OPERATOR_PERMISSION": (str,),
    "STAFF_ARE_OPERATORS": (bool,),
    "MAX_FRAME_BYTES": (int,),
    "MAX_MESSAGE_CHARS": (int,),
    "RATE_LIMIT_FRAMES": (int,),
    "RATE_LIMIT_WINDOW": (int, float),
    "REPLAY_PAGE_SIZE": (int,),
    "RESYNC_INTERVAL": (int, float),
    "GROUP_PREFIX": (str,),
    "PROCESSES": (int,),
    "AGENT": (str,),
    "AGENT_OPTIONS": (dict,),
    "RUNNER": (str,),
    "FLUSH_INTERVAL_MS": (int, float),
    "FLUSH_MAX_CHARS": (int,),
    "LEASE_TIMEOUT": (int, float),
    "HEARTBEAT_INTERVAL": (int, float),
    "ESCALATE_ON_CRASH": (bool,),
    "AGENT_IDLE_TIMEOUT": (int, float),
    "HISTORY_LIMIT": (int,),
    "MAX_CONCURRENT_RUNS": (int,),
    "RUN_SWEEP_INTERVAL": (int, float),
    "RUN_CHANNEL": (str,),
    "PRESENCE_BACKEND": (str,),
    "PRESENCE_REDIS_URL": (str,),
    "PRESENCE_HEARTBEAT": (int, float),
    "PRESENCE_TTL": (int, float),
    "PRESENCE_SWEEP": (int, float),
    "TYPING_TIMEOUT": (int, float),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "RUNNER": ("embedded", "worker"),
    "PRESENCE_BACKEND": ("auto", "memory", "redis"),
}
_POSITIVE = {
    "MAX_FRAME_BYTES",
    "MAX_MESSAGE_CHARS",
    "RATE_LIMIT_FRAMES",
    "RATE_LIMIT_WINDOW",
    "REPLAY_PAGE_SIZE",
    "RESYNC_INTERVAL",
    "PROCESSES",
    "FLUSH_INTERVAL_MS",
    "FLUSH_MAX_CHARS",
    "LEASE_TIMEOUT",
    "HEARTBEAT_INTERVAL",
    "AGENT_IDLE_TIMEOUT",
    "HISTORY_LIMIT",
    "MAX_CONCURRENT_RUNS",
    "RUN_SWEEP_INTERVAL",
    "PRESENCE_HEARTBEAT",
    "PRESENCE_TTL",
    "PRESENCE_SWEEP",
    "TYPING_TIMEOUT",
}
IMPORT_STRINGS = {"ADAPTER", "AGENT"}


def validate(user_settings: Any) -> dict[str, Any]:
    """Return the merged settings, or raise ImproperlyConfigured naming the bad key."""
    if not isinstance(user_settings, dict):
        raise ImproperlyConfigured(f"{SETTING_NAME} must be a dict, not {type(user_settings)}.")
    unknown = sorted(set(user_settings) - set(DEFAULTS))
    if unknown:
        raise ImproperlyConfigured(
            f"{SETTING_NAME}: unknown key(s) {', '.join(unknown)}. "
            f"Known keys: {', '.join(sorted(DEFAULTS))}."
        )
    merged = {**DEFAULTS, **user_settings}
    for key, value in merged.items():
        types = _TYPES[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join(t.__name__ for t in types)
            raise ImproperlyConfigured(f"{SETTING_NAME}[{key!r}] must be {names}, not {value!r}.")
        if key in _POSITIVE and value <= 0:
            raise ImproperlyConfigured(f"{SETTING_NAME}[{key!r}] must be > 0, not {value!r}.")
        if key in _CHOICES and value not in _CHOICES[key]:
            allowed = " or ".join(repr(c) for c in _CHOICES[key])
            raise ImproperlyConfigured(f"{SETTING_NAME}[{key!r}] must be {allowed}, not {value!r}.")
    if merged["HEARTBEAT_INTERVAL"] * 2 > merged["LEASE_TIMEOUT"]:
        raise ImproperlyConfigured(
            f"{SETTING_NAME}: HEARTBEAT_INTERVAL must be at most half of LEASE_TIMEOUT, or a "
            "slow network could make a live agent look crashed."
        )
    if merged["PRESENCE_HEARTBEAT"] * 2 > merged["PRESENCE_TTL"]:
        raise ImproperlyConfigured(
            f"{SETTING_NAME}: PRESENCE_HEARTBEAT must be at most half of PRESENCE_TTL, or "
            "people who are here would blink offline."
        )
    return merged


class DurableSessionsSettings:
    """Attribute access to ``DURABLE_SESSIONS`` with defaults; class paths are imported."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}
        self._merged: dict[str, Any] | None = None

    @property
    def merged(self) -> dict[str, Any]:
        if self._merged is None:
            self._merged = validate(getattr(settings, SETTING_NAME, {}))
        return self._merged

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_") or key not in DEFAULTS:
            raise AttributeError(f"Invalid {SETTING_NAME} setting: {key!r}")
        if key in self._cache:
            return self._cache[key]
        value = self.merged[key]
        if key in IMPORT_STRINGS:
            try:
                value = import_string(value)
            except ImportError as exc:
                raise ImproperlyConfigured(
                    f"{SETTING_NAME}[{key!r}]: cannot import {value!r}: {exc}"
                ) from exc
        self._cache[key] = value
        return value

    def reload(self) -> None:
        self._cache.clear()
        self._merged = None


ds_settings = DurableSessionsSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        ds_settings.reload()


setting_changed.connect(_reload)
