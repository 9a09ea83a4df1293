"""The ``HANDOFF_CONSOLE`` setting: the console's own keys, in one table.

Read it as ``from handoff_console.app_settings import console_settings`` and
``console_settings.REFRESH_SECONDS`` (a float). Same mechanism as ``DURABLE_SESSIONS``:
validated on first read, typed, cached, reloaded on ``setting_changed``.
"""

from __future__ import annotations

from typing import Any

from durable_sessions.conf import AppSettings, ClassPath, Float, Int, Str

SETTING_NAME = "HANDOFF_CONSOLE"


class ConsoleSettings(AppSettings):
    """The keys of ``HANDOFF_CONSOLE``."""

    setting_name = SETTING_NAME
    check_id = "handoff_console.E001"

    # A lost wake-up only delays: the feed re-sends the queue this often.
    REFRESH_SECONDS = Float(
        5.0, "seconds between the live feed's re-reads of the queue", positive=True
    )
    DEBOUNCE_SECONDS = Float(
        0.1, "wake-ups arriving within this many seconds make one update", positive=True
    )
    SNAPSHOT_AFTER = Int(
        20,
        "more changed sessions than this in one update: a fresh snapshot instead of rows",
        positive=True,
    )
    SECTION_LIMIT = Int(
        100, "rows in the sections of sessions with the AI and with other operators", positive=True
    )
    CLOSED_LIMIT = Int(20, "recently closed sessions shown", positive=True)
    MAX_NOTE_CHARS = Int(4000, "longest private note accepted, in characters", positive=True)
    AUTO_ASSIGN = Str(
        "off",
        "how queued sessions are given to available operators: 'off' (operators take them), "
        "'least_busy' (the fewest open conversations first) or 'round_robin' (the longest "
        "since their last assignment first)",
        choices=("off", "least_busy", "round_robin"),
    )
    CAPACITY = Int(
        3, "open conversations auto-assignment gives one operator at most", positive=True
    )
    OFFLINE_AFTER_SECONDS = Float(
        20.0,
        "an operator with no console page connected for this long counts as offline",
        positive=True,
    )
    RELEASE_AFTER_SECONDS = Float(
        0.0,
        "a session held by an operator offline for this long goes back to the queue (0: never)",
        positive=True,
        zero_is_off=True,
    )
    # A handoff_console.adapter.ConsoleAdapter subclass (not imported here: the adapter
    # module reads these settings).
    ADAPTER: ClassPath[type[Any]] = ClassPath(
        "handoff_console.adapter.ConsoleAdapter",
        "the adapter that names customers and ranks conversations in the console",
    )


console_settings = ConsoleSettings()
