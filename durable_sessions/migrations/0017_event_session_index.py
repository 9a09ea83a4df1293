"""Drop the events table's index on ``session_id`` alone.

The unique (session, seq) index starts with the same column and serves every lookup by
session, so the second index only cost each appended event one more entry (and the table
a third of its index space). Django would drop the foreign key and add it back to change
``db_index`` (checking every row of what can be a very large table): only the index is
dropped here, found by its columns, as the schema editor would name or find it.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def _session_indexes(schema_editor: BaseDatabaseSchemaEditor, table: str) -> list[str]:
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, table)
    return [
        name
        for name, info in constraints.items()
        if info["index"]
        and not info["unique"]
        and not info["primary_key"]
        and info["columns"] == ["session_id"]
    ]


def drop_index(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    table = apps.get_model("durable_sessions", "Event")._meta.db_table
    # On PostgreSQL without blocking the appends and reads of a live log meanwhile.
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    for name in _session_indexes(schema_editor, table):
        schema_editor.execute(f"DROP INDEX{concurrently} {schema_editor.quote_name(name)}")


def add_index(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    model = apps.get_model("durable_sessions", "Event")
    if _session_indexes(schema_editor, model._meta.db_table):
        return
    field = model._meta.get_field("session")
    schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))


class Migration(migrations.Migration):
    atomic = False  # DROP INDEX CONCURRENTLY runs outside a transaction
    dependencies: list[Any] = [("durable_sessions", "0016_translatable_names")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="event",
                    name="session",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=models.deletion.CASCADE,
                        related_name="events",
                        to="durable_sessions.durablesession",
                        verbose_name="session",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_index, add_index)],
        ),
    ]
