"""Channel-layer group names."""

from __future__ import annotations

import uuid

from durable_sessions.app_settings import ds_settings


def session_group(session_id: uuid.UUID | str) -> str:
    """The group every connection to one session joins."""
    hex_id = session_id.hex if isinstance(session_id, uuid.UUID) else uuid.UUID(session_id).hex
    return f"{ds_settings.GROUP_PREFIX}.s.{hex_id}"


def activity_group() -> str:
    """The group told when any session is created, changes hands, gets a message or closes
    (queue views such as the operator console listen to it)."""
    return f"{ds_settings.GROUP_PREFIX}.activity"
