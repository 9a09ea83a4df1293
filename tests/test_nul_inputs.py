"""NUL characters in what people type or send never reach a query: PostgreSQL refuses them
in text (and jsonb refuses ``\\u0000``), which would be a server error. Every search box,
filter and parameter either ignores them or refuses the request naming what was wrong."""

from __future__ import annotations

import math
from typing import Any

import pytest
from django.contrib import admin
from django.core.management import CommandError, call_command
from django.urls import reverse
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from durable_sessions import service
from durable_sessions.errors import InvalidInput
from durable_sessions.models import DurableSession
from tests.fuzzing import FUZZ, json_value, nasty_text
from tests.hypothesis_profiles import examples

pytestmark = [pytest.mark.django_db]

NUL_VALUES = ["\x00", "a\x00b"]


def changelists(apps: tuple[str, ...] = ()) -> list[str]:
    """The admin lists (of these apps only, if given)."""
    return [
        f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"
        for model in admin.site._registry
        if not apps or model._meta.app_label in apps
    ]


@pytest.mark.parametrize("name", changelists())
def test_admin_searches_and_filters_with_nul_are_answered(admin_client, name):
    url = reverse(name)
    for value in NUL_VALUES:
        for param in ("q", "o", "p", "status", "control", "state", "id__exact"):
            response = admin_client.get(url, {param: value})
            assert response.status_code < 500, (name, param, value)


@pytest.mark.parametrize("name", changelists(("durable_sessions", "handoff_console")))
def test_the_admin_refuses_a_nul_in_a_list_parameter_naming_it(admin_client, name):
    response = admin_client.get(reverse(name), {"status": "open\x00"})
    assert response.status_code == 400
    assert "'status'" in response.content.decode()


def test_an_admin_page_of_an_id_with_nul_is_not_found(admin_client):
    for model in admin.site._registry:
        meta = model._meta
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=["a\x00b"])
        response = admin_client.get(url, follow=True)
        assert response.status_code < 500, meta.label
        # The admin says the object does not exist (and goes back to the list).
        assert response.status_code in (200, 404), meta.label


def same_json(stored: Any, given: Any) -> bool:
    """Equal as JSON: PostgreSQL's jsonb keeps numbers as decimals (a float of integral
    value may come back as an int, to its shortest digits)."""
    if isinstance(given, dict):
        return (
            isinstance(stored, dict)
            and stored.keys() == given.keys()
            and all(same_json(stored[k], v) for k, v in given.items())
        )
    if isinstance(given, list):
        return (
            isinstance(stored, list)
            and len(stored) == len(given)
            and all(same_json(a, b) for a, b in zip(stored, given, strict=True))
        )
    if isinstance(given, float) and not isinstance(stored, bool):
        return isinstance(stored, int | float) and math.isclose(stored, given)
    return stored == given


@given(metadata=st.one_of(json_value, st.dictionaries(nasty_text, json_value, max_size=3)))
@hypothesis_settings(FUZZ, max_examples=examples(40))
@example(metadata={"a": "\x00"})
@example(metadata={"\x00": 1})
@example(metadata={"a": ["\ud800"]})
@example(metadata={"a": float("nan")})
@example(metadata={"a": {"b": object()}})
@example(metadata={"": 6.139370363278655e16})  # jsonb keeps it as 61393703632786550
def test_session_metadata_is_stored_as_given_or_refused_naming_it(metadata):
    before = DurableSession.objects.count()
    try:
        session = service.create_session(visitor="v-metadata", metadata=metadata)
    except InvalidInput as error:
        assert error.field == "metadata"
        assert DurableSession.objects.count() == before
        return
    assert same_json(DurableSession.objects.get(pk=session.pk).metadata, metadata or {})
    session.delete()


@pytest.mark.parametrize(
    ("command", "args", "says"),
    [
        ("ds_erase", ["--user", "\udcff"], "--user"),
        ("grant_console", ["bad\udcffname"], "username"),
        ("ds_erase", ["--visitor", "v\udcff"], "printable"),
    ],
)
def test_commands_refuse_arguments_that_are_not_text(command, args, says):
    # A shell passes bytes that are not UTF-8 as lone surrogates.
    with pytest.raises(CommandError, match=says):
        call_command(command, *args)
