"""``manage.py compact_events``: fold finished replies' deltas into message.snapshot events."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from durable_sessions.app_settings import ds_settings
from durable_sessions.service.compaction import Compacted, compact_due


class Command(BaseCommand):
    help = (
        "Compact the event log: each finished reply's deltas and part events become "
        "message.snapshot events (seqs never change; resume stays exact). Streaming "
        "replies are never touched. See docs/protocol.md (Compaction)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--older-than",
            type=float,
            default=None,
            help="seconds since a reply ended before it is compacted "
            "(default: COMPACT_AFTER, or 0 when that is off)",
        )
        parser.add_argument("--session", help="compact only this session (its id)")
        parser.add_argument(
            "--batch", type=int, default=500, help="replies compacted per pass (500)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        older = options["older_than"]
        if older is None:
            older = ds_settings.COMPACT_AFTER
        if older < 0:
            raise CommandError("--older-than must be >= 0")
        if options["batch"] <= 0:
            raise CommandError("--batch must be > 0")
        session_id = None
        if options["session"]:
            try:
                session_id = uuid.UUID(options["session"])
            except ValueError:
                given = options["session"]
                raise CommandError(f"--session {given!r} is not a session id") from None
        total = Compacted()
        while True:
            done = compact_due(after_seconds=older, limit=options["batch"], session_id=session_id)
            total += done
            if done.messages < options["batch"]:
                break
        self.stdout.write(
            f"compacted {total.messages} repl{'y' if total.messages == 1 else 'ies'}: "
            f"{total.deleted} event rows folded into {total.snapshots} message.snapshot events"
        )
