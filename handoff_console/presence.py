"""The customer's presence on the queue's rows: a dot for online, with their devices.

Read from the presence store the session connections keep (Redis across processes, or the
process's memory), in one batch per update. Presence changes do not wake the feed: its
periodic refresh (``REFRESH_SECONDS``) carries them. A store that cannot be read leaves the
rows without presence (``customer_online`` is ``None``: unknown), never without rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from durable_sessions.delivery.presence import CUSTOMER, keeper

log = logging.getLogger(__name__)


async def add_presence(rows: Iterable[dict[str, Any]]) -> None:
    """Set ``customer_online`` and ``customer_devices`` on each open session's row."""
    open_rows = [row for row in rows if row.get("status") == "open"]
    if not open_rows:
        return
    try:
        found = await keeper.store.read([row["id"] for row in open_rows])
    except Exception as error:  # a store outage is a pause: rows go without presence
        log.warning("presence unavailable for the console's rows: %s", error)
        return
    for row in open_rows:
        customers = [e for e in found.get(row["id"], []) if e.kind == CUSTOMER]
        row["customer_online"] = bool(customers)
        row["customer_devices"] = len(customers)
