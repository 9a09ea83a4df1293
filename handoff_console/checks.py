"""System checks of the console's own configuration."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, register

from handoff_console.app_settings import console_settings


@register()
def check_console_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``handoff_console.E001``: ``HANDOFF_CONSOLE`` is invalid."""
    return console_settings.check()
