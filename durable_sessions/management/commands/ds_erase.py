"""``manage.py ds_erase``: delete everything of one customer (a data-protection request)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from durable_sessions import service
from durable_sessions.errors import ServiceError
from durable_sessions.models import DurableSession
from durable_sessions.service.validation import storable


class Command(BaseCommand):
    help = (
        "Erase a customer: every session of the user or anonymous visitor (open ones too), "
        "with everything linked to it, and the device links their browser opened. Leaves "
        "an audit record with counts only."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--user", help="the user's id or username")
        parser.add_argument("--visitor", help="an anonymous visitor id")
        parser.add_argument("--session", help="the customer of this session (its UUID)")
        parser.add_argument(
            "--dry-run", action="store_true", help="count the sessions, delete nothing"
        )
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        named = [k for k in ("user", "visitor", "session") if options[k]]
        if len(named) != 1:
            raise CommandError("name one customer: --user, --visitor or --session")
        user, visitor = self._customer(options)
        if options["dry_run"]:
            count = service.retention.customer_sessions(user=user, visitor=visitor).count()
            self.stdout.write(
                json.dumps({"would_delete": count})
                if options["json"]
                else f"Would delete {count} sessions."
            )
            return
        try:
            record = service.erase_customer(user=user, visitor=visitor, via="command")
        except ServiceError as error:
            raise CommandError(error.message) from error
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {"deleted": record.sessions, "counts": record.counts, "record": record.pk}
                )
            )
            return
        rows = ", ".join(f"{k}: {v}" for k, v in record.counts.items()) or "none"
        self.stdout.write(f"Erased {record.sessions} sessions (rows {rows}); record {record.pk}.")

    def _customer(self, options: dict[str, Any]) -> tuple[Any, str]:
        if options["visitor"]:
            return None, options["visitor"]
        if options["session"]:
            try:
                session_id = uuid.UUID(options["session"])
            except ValueError as error:
                raise CommandError("--session must be a session UUID") from error
            session = DurableSession.objects.filter(pk=session_id).select_related("owner").first()
            if session is None:
                raise CommandError(f"no session {session_id}")
            return session.owner, session.owner_visitor
        users = get_user_model()._default_manager
        key = options["user"]
        if not storable(key):
            # A shell can pass bytes that are not UTF-8 (lone surrogates here): no stored
            # username holds them, and the database cannot take them in a query.
            raise CommandError("--user must be printable text (a user id or username)")
        user = users.filter(**{users.model.USERNAME_FIELD: key}).first()
        if user is None and key.isdigit():
            user = users.filter(pk=int(key)).first()
        if user is None:
            raise CommandError(f"no user {key!r}")
        return user, ""
