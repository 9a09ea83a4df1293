"""Create the demo accounts: a customer and an operator."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand

DEMO_ACCOUNTS = [
    # username, password, operator?
    ("customer", "customer-demo", False),
    ("operator", "operator-demo", True),
]


class Command(BaseCommand):
    help = "Create (or reset) the demo customer and operator accounts."

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        permission = Permission.objects.get(
            content_type__app_label="handoff_console", codename="use_console"
        )
        for username, password, operator in DEMO_ACCOUNTS:
            user, _ = users.objects.get_or_create(username=username)
            user.set_password(password)
            user.first_name = username.capitalize()
            user.save()
            if operator:
                user.user_permissions.add(permission)
            role = "operator (console access)" if operator else "customer"
            self.stdout.write(f"  {role:28} username: {username:10} password: {password}")
        self.stdout.write(self.style.SUCCESS("Demo accounts ready."))
