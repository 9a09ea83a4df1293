"""Create the demo accounts: a customer and an operator."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from handoff_console.permissions import operator_permission

DEMO_ACCOUNTS = [
    # username, password, role
    ("customer", "customer-demo", "customer"),
    ("operator", "operator-demo", "operator"),
    ("admin", "admin-demo", "admin"),
]
ROLE_LABELS = {
    "customer": "customer",
    "operator": "operator (console access)",
    "admin": "admin (Django admin, console)",
}


class Command(BaseCommand):
    help = "Create (or reset) the demo customer and operator accounts."

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        permission = operator_permission()  # DURABLE_SESSIONS["OPERATOR_PERMISSION"]
        if permission is None:
            raise CommandError("the operator permission does not exist; run migrate first")
        for username, password, role in DEMO_ACCOUNTS:
            user, _ = users.objects.get_or_create(username=username)
            user.set_password(password)
            user.first_name = username.capitalize()
            user.is_staff = user.is_superuser = role == "admin"
            user.save()
            if role in ("operator", "admin"):
                # Staff status alone makes nobody an operator (STAFF_ARE_OPERATORS is off).
                user.user_permissions.add(permission)
            label = ROLE_LABELS[role]
            self.stdout.write(f"  {label:30} username: {username:10} password: {password}")
        self.stdout.write(self.style.SUCCESS("Demo accounts ready."))
