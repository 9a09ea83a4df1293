"""``manage.py ds_retention``: archive, then delete, closed sessions past their time."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from durable_sessions import service
from durable_sessions.app_settings import ds_settings
from durable_sessions.exports import archive_line, open_archive


class Command(BaseCommand):
    help = (
        "Delete the sessions closed more than RETAIN_CLOSED_DAYS days ago (or --days), with "
        "their whole log, in batches of RETENTION_BATCH_SIZE; with --archive, each batch is "
        "first appended to a JSON-lines file. Open sessions are never touched."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--days",
            type=float,
            help="delete sessions closed more than this many days ago (default: "
            "RETAIN_CLOSED_DAYS)",
        )
        parser.add_argument(
            "--archive",
            metavar="FILE",
            help="append each session to this JSON-lines file before deleting it "
            "(gzip when it ends with .gz)",
        )
        parser.add_argument("--batch-size", type=int, help="sessions per transaction")
        parser.add_argument("--limit", type=int, help="delete at most this many sessions")
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be deleted, delete nothing"
        )
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"]
        if days is not None and days <= 0:
            raise CommandError("--days must be > 0")
        for name in ("batch_size", "limit"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
        cutoff = service.retention_cutoff(days=days)
        if cutoff is None:
            self._report(options, {"deleted": 0, "reason": "RETAIN_CLOSED_DAYS is 0: kept"})
            return
        if options["dry_run"]:
            count = service.expired_sessions(cutoff).count()
            if options["limit"] is not None:
                count = min(count, options["limit"])
            self._report(options, {"would_delete": count, "closed_before": cutoff.isoformat()})
            return
        archive = options["archive"]
        if archive is not None and not Path(archive).resolve().parent.is_dir():
            raise CommandError(f"--archive: the directory of {archive!r} does not exist")
        record = service.purge_expired(
            closed_before=cutoff,
            archive=_appender(archive) if archive else None,
            batch_size=options["batch_size"] or ds_settings.RETENTION_BATCH_SIZE,
            limit=options["limit"],
            via="command",
            archive_name=Path(archive).name if archive else "",
        )
        self._report(
            options,
            {
                "deleted": record.sessions,
                "counts": record.counts,
                "closed_before": cutoff.isoformat(),
                "archive": archive or "",
                "record": record.pk,
            },
        )

    def _report(self, options: dict[str, Any], result: dict[str, Any]) -> None:
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        if "would_delete" in result:
            self.stdout.write(
                f"Would delete {result['would_delete']} sessions closed before "
                f"{result['closed_before']}."
            )
        elif "reason" in result:
            self.stdout.write(f"Nothing deleted: {result['reason']}.")
        else:
            rows = ", ".join(f"{k}: {v}" for k, v in result["counts"].items()) or "none"
            where = f"; archived to {result['archive']}" if result["archive"] else ""
            self.stdout.write(
                f"Deleted {result['deleted']} sessions closed before "
                f"{result['closed_before']} (rows {rows}){where}."
            )


def _appender(path: str) -> service.retention.Archiver:
    """Appends a batch's records to ``path`` and makes them durable before returning."""

    def append(records: list[dict[str, Any]]) -> None:
        with open_archive(path, "at") as out:
            for record in records:
                out.write(archive_line(record))
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)  # on disk before the batch is deleted
        finally:
            os.close(descriptor)

    return append
