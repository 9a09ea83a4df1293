"""The events table keeps one index per lookup: appends pay one entry per index."""

from __future__ import annotations

import pytest
from django.db import connection

from durable_sessions.models import Event

pytestmark = [pytest.mark.django_db]


def test_lookups_by_session_use_the_unique_session_seq_index_only():
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Event._meta.db_table)
    by_session = {
        (tuple(info["columns"]), bool(info["unique"]))
        for info in constraints.values()
        if info["columns"][:1] == ["session_id"] and not info["foreign_key"]
    }
    assert by_session == {(("session_id", "seq"), True)}
