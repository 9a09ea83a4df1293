"""The ``HANDOFF_CONSOLE`` setting: a dict of the console's own knobs, read at use time.

    HANDOFF_CONSOLE = {"REFRESH_SECONDS": 5.0}

Read at each use (not cached), so ``override_settings`` in tests just works.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SETTING_NAME = "HANDOFF_CONSOLE"

DEFAULTS: dict[str, Any] = {
    # The live feed re-sends the queue this often, so that a lost wake-up only delays.
    "REFRESH_SECONDS": 5.0,
    # Wake-ups arriving within this window are answered with one update.
    "DEBOUNCE_SECONDS": 0.1,
    # More changed sessions than this in one window: send a fresh snapshot instead of rows.
    "SNAPSHOT_AFTER": 20,
    # Rows per section (sessions with the AI, with other operators), newest first.
    "SECTION_LIMIT": 100,
    # Recently closed sessions shown.
    "CLOSED_LIMIT": 20,
    # Longest private note accepted, in characters.
    "MAX_NOTE_CHARS": 4000,
}


def console_setting(name: str) -> Any:
    """The value of one ``HANDOFF_CONSOLE`` key, or its default."""
    configured = getattr(settings, SETTING_NAME, {})
    if not isinstance(configured, dict):
        raise ImproperlyConfigured(f"{SETTING_NAME} must be a dict.")
    unknown = sorted(set(configured) - set(DEFAULTS))
    if unknown:
        raise ImproperlyConfigured(
            f"{SETTING_NAME}: unknown key(s) {', '.join(unknown)}. "
            f"Known keys: {', '.join(sorted(DEFAULTS))}."
        )
    return configured.get(name, DEFAULTS[name])
