"""Template tags for pages that load ``client.js``: ``{% load durable_sessions %}``."""

from __future__ import annotations

from django import template

from durable_sessions.app_settings import ds_settings

register = template.Library()


@register.simple_tag
def client_storage() -> str:
    """``"on"`` when pages may let client.js keep transcripts in localStorage
    (``DURABLE_SESSIONS["CLIENT_STORAGE"]``), else ``"off"``."""
    return "on" if ds_settings.CLIENT_STORAGE else "off"
