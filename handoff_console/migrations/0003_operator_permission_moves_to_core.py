"""The console's ``use_console`` permission gives way to the core's ``operate_sessions``.

Every user and group holding ``handoff_console.use_console`` is given
``durable_sessions.operate_sessions``; then the old permission, and the model that only
carried it, go away. Migrating back gives the old permission to every holder of the new one.
"""

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.db import migrations

# app_label, model, codename, name
OLD = ("handoff_console", "consoleaccess", "use_console", "Can use the handoff console")
NEW = (
    "durable_sessions",
    "durablesession",
    "operate_sessions",
    "Can read and operate any session",
)


def find_permission(apps, alias, app_label, model, codename, name):
    Permission = apps.get_model("auth", "Permission")
    return (
        Permission.objects.using(alias)
        .filter(content_type__app_label=app_label, codename=codename)
        .first()
    )


def ensure_permission(apps, alias, app_label, model, codename, name):
    # Permissions are normally made after every migration (post_migrate): make it now.
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    content_type, _ = ContentType.objects.using(alias).get_or_create(
        app_label=app_label, model=model
    )
    permission, _ = Permission.objects.using(alias).get_or_create(
        content_type=content_type, codename=codename, defaults={"name": name}
    )
    return permission


def holder_tables(apps):
    """(through model, field naming the holder) for groups and, if it has them, users."""
    Group = apps.get_model("auth", "Group")
    tables = [(Group.permissions.through, Group._meta.get_field("permissions"))]
    User = apps.get_model(settings.AUTH_USER_MODEL)
    try:
        tables.append((User.user_permissions.through, User._meta.get_field("user_permissions")))
    except (AttributeError, FieldDoesNotExist):
        pass  # a custom user model without PermissionsMixin
    return tables


def copy_holders(apps, alias, source, target):
    """Give ``target`` to every user and group that holds ``source``."""
    for through, field in holder_tables(apps):
        holder = through._meta.get_field(field.m2m_field_name()).attname
        permission = through._meta.get_field(field.m2m_reverse_field_name()).attname
        rows = through.objects.using(alias)
        holders = set(rows.filter(**{permission: source.pk}).values_list(holder, flat=True))
        holders -= set(rows.filter(**{permission: target.pk}).values_list(holder, flat=True))
        rows.bulk_create([through(**{holder: pk, permission: target.pk}) for pk in holders])


def forward(apps, schema_editor):
    alias = schema_editor.connection.alias
    old = find_permission(apps, alias, *OLD)
    if old is not None:
        copy_holders(apps, alias, old, ensure_permission(apps, alias, *NEW))
        old.delete()  # and every grant of it
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.using(alias).filter(app_label=OLD[0], model=OLD[1]).delete()


def backward(apps, schema_editor):
    alias = schema_editor.connection.alias
    new = find_permission(apps, alias, *NEW)
    if new is not None:
        copy_holders(apps, alias, new, ensure_permission(apps, alias, *OLD))


class Migration(migrations.Migration):
    dependencies = [
        ("handoff_console", "0002_operator_notes"),
        ("durable_sessions", "0005_operate_sessions_permission"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(forward, backward),
        migrations.DeleteModel(name="ConsoleAccess"),
    ]
