"""``manage.py console_assign``: one assignment pass (for cron, when no console is open)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from handoff_console.assignment import run_pass


class Command(BaseCommand):
    """Runs :func:`handoff_console.assignment.run_pass` once, as every console feed does on
    each refresh: assigns queued sessions (with ``AUTO_ASSIGN``) and releases the claims of
    operators offline for longer than ``RELEASE_AFTER_SECONDS``."""

    help = "Assign queued sessions to available operators and release absent operators' claims."

    def handle(self, *args: Any, **options: Any) -> None:
        result = run_pass()
        self.stdout.write(
            f"assigned {len(result.assigned)}, released {len(result.released)} session(s)"
        )
