"""The operator permission is the core's ``durable_sessions.operate_sessions``: granted by
``grant_console`` and the demo seed, and given by ``migrate`` to every holder of the
console's former ``handoff_console.use_console``."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from durable_sessions.adapter import get_adapter
from durable_sessions.app_settings import ds_settings
from tests.factories import make_user

BEFORE = [
    ("durable_sessions", "0004_message_created_default"),
    ("handoff_console", "0002_operator_notes"),
]
OLD_CODENAME = "use_console"


def fresh(user):
    """The user read again, without Django's per-object permission cache."""
    return get_user_model().objects.get(pk=user.pk)


def perms(user) -> set[str]:
    return fresh(user).get_all_permissions()


def test_the_core_declares_the_operator_permission_and_the_console_none(db):
    assert ds_settings.OPERATOR_PERMISSION == "durable_sessions.operate_sessions"
    found = Permission.objects.filter(content_type__app_label="durable_sessions")
    assert found.filter(codename="operate_sessions").exists()
    # Only the default permissions of its models: none that could gate the console.
    assert not Permission.objects.filter(content_type__app_label="handoff_console").exclude(
        codename__regex=r"^(add|change|delete|view)_(operatornote|cannedreply|readmark|team|operatoravailability)$"
    )


def test_grant_console_gives_the_core_permission_and_makes_an_operator(db):
    dora = make_user("dora")
    assert not get_adapter().is_operator(fresh(dora))
    call_command("grant_console", "dora", stdout=StringIO())
    assert "durable_sessions.operate_sessions" in perms(dora)
    assert get_adapter().is_operator(fresh(dora))
    call_command("grant_console", "dora", "--revoke", stdout=StringIO())
    assert not get_adapter().is_operator(fresh(dora))


def test_the_demo_operator_holds_the_core_permission(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("seed_demo", stdout=StringIO())
    operator = get_user_model().objects.get(username="operator")
    assert perms(operator) == {"durable_sessions.operate_sessions"}
    assert get_adapter().is_operator(operator)
    assert not get_adapter().is_operator(get_user_model().objects.get(username="customer"))


@pytest.mark.django_db(transaction=True)
def test_holders_of_the_former_console_permission_are_operators_after_migrating():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE)
    try:
        # A database of the earlier version: only the console's permission exists.
        Permission.objects.filter(codename="operate_sessions").delete()
        content_type, _ = ContentType.objects.get_or_create(
            app_label="handoff_console", model="consoleaccess"
        )
        old, _ = Permission.objects.get_or_create(
            content_type=content_type,
            codename=OLD_CODENAME,
            defaults={"name": "Can use the handoff console"},
        )
        alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
        alice.user_permissions.add(old)
        support = Group.objects.create(name="support")
        support.permissions.add(old)
        bob.groups.add(support)
        MigrationExecutor(connection).migrate(latest)
        ContentType.objects.clear_cache()

        assert not Permission.objects.filter(codename=OLD_CODENAME).exists()
        assert not ContentType.objects.filter(model="consoleaccess").exists()
        adapter = get_adapter()
        assert [adapter.is_operator(fresh(u)) for u in (alice, bob, carol)] == [True, True, False]
        assert perms(alice) == perms(bob) == {"durable_sessions.operate_sessions"}

        # And back: holders of the core permission get the console's former one again.
        MigrationExecutor(connection).migrate(BEFORE)
        assert "handoff_console.use_console" in perms(alice)
        assert "handoff_console.use_console" in perms(bob)
        assert perms(carol) == set()
    finally:
        MigrationExecutor(connection).migrate(latest)
        ContentType.objects.clear_cache()
