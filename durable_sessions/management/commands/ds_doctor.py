"""``manage.py ds_doctor``: verify a deployment and print what to fix."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from durable_sessions.management.doctor import FAIL, OK, WARN, Options, diagnose, send_echo

_MARKS = {OK: "[ ok ]", WARN: "[warn]", FAIL: "[FAIL]"}


class Command(BaseCommand):
    help = (
        "Check this deployment: settings, the channel layer across processes, the "
        "database (version, migrations, indexes), clocks, gapless logs, stuck runs and "
        "stale claims. Exits with status 1 when something must be fixed."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="print the findings as JSON")
        parser.add_argument(
            "--stuck-after",
            type=float,
            default=60.0,
            help="seconds after which a pending run counts as stuck (60)",
        )
        parser.add_argument(
            "--queue-warn",
            type=float,
            default=900.0,
            help="seconds after which a queued session is reported (900)",
        )
        parser.add_argument(
            "--recent-sessions",
            type=int,
            default=200,
            help="recently active sessions whose log is checked for gaps (200)",
        )
        parser.add_argument(
            "--no-cross-process",
            action="store_true",
            help="skip the channel-layer round trip from another process",
        )
        parser.add_argument("--echo-to", help="(internal) the other process of that check")

    def handle(self, *args: Any, **options: Any) -> None:
        if options.get("echo_to"):
            send_echo(options["echo_to"])
            return
        if options["stuck_after"] <= 0 or options["queue_warn"] <= 0:
            raise CommandError("--stuck-after and --queue-warn must be > 0")
        if options["recent_sessions"] <= 0:
            raise CommandError("--recent-sessions must be > 0")
        findings = diagnose(
            Options(
                stuck_after=options["stuck_after"],
                queue_warn=options["queue_warn"],
                recent_sessions=options["recent_sessions"],
                cross_process=not options["no_cross_process"],
            )
        )
        if options["json"]:
            self.stdout.write(json.dumps([asdict(f) for f in findings], indent=2))
        else:
            for finding in findings:
                line = f"{_MARKS[finding.level]} {finding.area}: {finding.text}"
                self.stdout.write(line)
                if finding.fix and finding.level != OK:
                    self.stdout.write(f"       fix: {finding.fix}")
        failed = sum(f.level == FAIL for f in findings)
        if failed:
            raise CommandError(f"{failed} problem(s) to fix", returncode=1)
        if not options["json"]:
            self.stdout.write("no problem found")
