"""``manage.py grant_console <username> [--revoke]``: give or take console access."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from durable_sessions.app_settings import ds_settings
from durable_sessions.service.validation import storable
from handoff_console.permissions import is_operator, operator_permission


class Command(BaseCommand):
    """Grants (or revokes) the operator permission (``DURABLE_SESSIONS["OPERATOR_PERMISSION"]``,
    by default ``durable_sessions.operate_sessions``)."""

    help = (
        "Give a user access to the handoff console (the permission named by "
        'DURABLE_SESSIONS["OPERATOR_PERMISSION"]), or take it away with --revoke.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="the user's username")
        parser.add_argument(
            "--revoke", action="store_true", help="take the permission away instead"
        )

    def handle(self, *args: Any, username: str, revoke: bool, **options: Any) -> None:
        model = get_user_model()
        if not storable(username):
            # Bytes that are not UTF-8 arrive as lone surrogates: no username holds them.
            raise CommandError("the username must be printable text")
        user = model.objects.filter(**{model.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        permission = operator_permission()
        if permission is None:
            raise CommandError(
                f"the permission {ds_settings.OPERATOR_PERMISSION!r} does not exist; "
                "run migrate first"
            )
        if revoke:
            user.user_permissions.remove(permission)
        else:
            user.user_permissions.add(permission)
        user = model.objects.get(pk=user.pk)  # a fresh object: permissions are cached
        verb = "Revoked console access from" if revoke else "Granted console access to"
        self.stdout.write(self.style.SUCCESS(f"{verb} {username}."))
        if revoke and is_operator(user):
            # Staff status or a group still makes them an operator: say so, not silently.
            self.stderr.write(
                self.style.WARNING(
                    f"{username} can still use the console (staff status or a group's "
                    "permission); change those in the admin."
                )
            )
        if not revoke and not user.is_active:
            self.stderr.write(
                self.style.WARNING(f"{username} is inactive and cannot log in until activated.")
            )
