"""Retention of closed sessions and erasure of a customer: exactly what is meant goes, in
batches, archived first; nothing of anybody else; an audit record without personal data;
live connections of a deleted session close with 4410."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import ForeignKey
from django.test import AsyncClient, Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from durable_sessions import exports, service
from durable_sessions.adapter import VISITOR_KEY
from durable_sessions.chat_models import ChatLink
from durable_sessions.consumers import CLOSE_GONE
from durable_sessions.delivery.publish import make_async
from durable_sessions.errors import InvalidInput
from durable_sessions.models import (
    DeletionRecord,
    DeviceGrant,
    DurableSession,
    MessagePart,
    PartState,
    PartType,
)
from durable_sessions.rating_models import SessionRating
from handoff_console import notes, reading
from tests.factories import make_user, open_ws, visitor_session
from tests.hypothesis_profiles import examples

pytestmark = pytest.mark.django_db

JSON = "application/json"
SECRET_TEXT = "my card number is 4111 1111 1111 1111"


# --- builders -------------------------------------------------------------------------------


def linked_models() -> list[tuple[type, str]]:
    """Every model (of every installed app) with a foreign key to a session, and the key."""
    found = []
    for model in apps.get_models():
        for field in model._meta.get_fields():
            if isinstance(field, ForeignKey) and field.related_model is DurableSession:
                found.append((model, field.name))
    return found


def footprint(session_ids: list[Any]) -> dict[str, int]:
    """Rows of each linked model (and the sessions) that belong to ``session_ids``."""
    counts = {"sessions": DurableSession.objects.filter(pk__in=session_ids).count()}
    for model, name in linked_models():
        counts[model._meta.label] = model._default_manager.filter(
            **{f"{name}__in": session_ids}
        ).count()
    return counts


def full_session(owner: Any = None, *, visitor: str = "", operator: Any = None) -> DurableSession:
    """A session with something in every linked table: messages, a reply with a part,
    a run, handoff records, a note, a read mark, a redeemed device grant and a chat id."""
    session = service.create_session(owner=owner, visitor=visitor, title="order 1042")
    ChatLink.objects.create(chat_id=f"chat-{session.pk}", session=session)  # an AI SDK chat
    service.post_customer_message(session.id, SECRET_TEXT)  # starts a (pending) run
    reply = service.start_assistant_message(session.id)
    MessagePart.objects.create(
        session=session, message=reply, index=0, type=PartType.TEXT, state=PartState.DONE
    )
    service.finish_assistant_message(reply)
    if owner is None:  # an account's other device logs in instead
        grant = service.devices.create_device_grant(session.id)
        service.devices.redeem_device_grant(grant.token, f"phone-of-{visitor}")
    if operator is not None:
        service.take_over(session.id, operator)
        service.operator_reply(session.id, operator=operator, content="hello")
        notes.add_note(session.id, author=operator, text=f"customer said: {SECRET_TEXT}")
        session.refresh_from_db()
        reading.mark_read(session, operator, session.last_seq)
    # A rating needs a closed session (the service refuses others): written as stored.
    SessionRating.objects.create(session=session, score=4, comment="fine", seq=session.last_seq)
    return DurableSession.objects.get(pk=session.pk)


def close_at(session: DurableSession, when: Any) -> DurableSession:
    service.close_session(session.id)
    DurableSession.objects.filter(pk=session.pk).update(closed_at=when)  # an old closing
    return DurableSession.objects.get(pk=session.pk)


def days_ago(days: float) -> Any:
    return timezone.now() - timedelta(days=days)


def without_times(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("format", "version", "archived_at")}


@pytest.fixture
def operator():
    return make_user("olga", operator=True)


# --- retention ------------------------------------------------------------------------------


def test_every_linked_model_has_rows_in_a_full_session(operator):
    """The builder reaches every table linked to sessions, so the tests below prove that
    deletion leaves none of them behind."""
    session = full_session(visitor="v-full", operator=operator)
    empty = [label for label, n in footprint([session.pk]).items() if n == 0]
    assert empty == []


def test_retention_deletes_old_closed_sessions_only(operator):
    old_closed = close_at(full_session(visitor="v1", operator=operator), days_ago(40))
    recent_closed = close_at(full_session(visitor="v2", operator=operator), days_ago(5))
    old_open = full_session(visitor="v3", operator=operator)
    DurableSession.objects.filter(pk=old_open.pk).update(created_at=days_ago(400))
    kept = [recent_closed.pk, old_open.pk]
    before = footprint(kept)

    record = service.purge_expired(closed_before=days_ago(30))

    assert set(footprint([old_closed.pk]).values()) == {0}
    assert footprint(kept) == before
    assert record.kind == "retention" and record.sessions == 1
    assert record.counts["durable_sessions.Event"] == old_closed.last_seq
    assert record.counts["handoff_console.OperatorNote"] == 1


def test_retention_deletes_in_batches_of_the_setting(ds_config):
    ds_config(RETENTION_BATCH_SIZE=2)
    ids = [close_at(full_session(visitor=f"v{n}"), days_ago(40)).pk for n in range(5)]
    with CaptureQueriesContext(connection) as queries:
        record = service.purge_expired(closed_before=days_ago(30))
    session_deletes = [
        q["sql"]
        for q in queries
        if q["sql"].startswith("DELETE")
        and "durable_sessions_durablesession" in q["sql"]
        and "durable_sessions_durablesession_" not in q["sql"].split("WHERE")[0]
    ]
    assert len(session_deletes) == 3  # 2 + 2 + 1
    assert record.sessions == 5
    assert not DurableSession.objects.filter(pk__in=ids).exists()


def test_retention_limit_stops_after_that_many_sessions_oldest_first():
    sessions = [close_at(full_session(visitor=f"v{n}"), days_ago(40 + n)) for n in range(3)]
    record = service.purge_expired(closed_before=days_ago(30), limit=2, batch_size=1)
    assert record.sessions == 2
    assert list(DurableSession.objects.values_list("pk", flat=True)) == [sessions[0].pk]


@pytest.mark.parametrize("name", ["archive.jsonl", "archive.jsonl.gz"])
def test_command_archives_each_session_then_deletes_it(tmp_path, operator, name):
    sessions = [
        close_at(full_session(visitor=f"v{n}", operator=operator), days_ago(40 + n))
        for n in range(3)
    ]
    open_one = full_session(visitor="v-open")
    expected = {str(s.pk): exports.export_session(s.pk)["sessions"][0] for s in sessions}
    path = tmp_path / name
    call_command("ds_retention", "--days", "30", "--archive", str(path), "--batch-size", "2")

    records = list(exports.read_archive(path))
    assert [r["format"] for r in records] == ["durable-sessions.archive"] * 3
    assert {r["session"]["id"]: without_times(r) for r in records} == expected
    # Oldest first: a later run appends after them.
    assert [r["session"]["id"] for r in records] == [str(s.pk) for s in reversed(sessions)]
    assert list(DurableSession.objects.values_list("pk", flat=True)) == [open_one.pk]
    record = DeletionRecord.objects.get()
    assert (record.kind, record.via, record.sessions, record.archive) == (
        "retention",
        "command",
        3,
        name,
    )


def test_an_archive_that_fails_stops_the_deletion():
    session = close_at(full_session(visitor="v1"), days_ago(40))

    def broken(records: list[dict[str, Any]]) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        service.purge_expired(closed_before=days_ago(30), archive=broken)
    assert DurableSession.objects.filter(pk=session.pk).exists()


def test_command_keeps_everything_when_retention_is_off_or_dry_run(ds_config, capsys):
    session = close_at(full_session(visitor="v1"), days_ago(4000))
    call_command("ds_retention", "--json")  # RETAIN_CLOSED_DAYS defaults to 0: kept
    assert json.loads(capsys.readouterr().out)["deleted"] == 0
    ds_config(RETAIN_CLOSED_DAYS=30)
    call_command("ds_retention", "--dry-run", "--json")
    assert json.loads(capsys.readouterr().out)["would_delete"] == 1
    assert DurableSession.objects.filter(pk=session.pk).exists()
    call_command("ds_retention", "--json")
    assert json.loads(capsys.readouterr().out)["deleted"] == 1
    assert not DurableSession.objects.filter(pk=session.pk).exists()


@pytest.mark.parametrize(
    "args, error",
    [
        (["--days", "0"], "--days must be > 0"),
        (["--days", "1", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["--days", "1", "--archive", "/nonexistent-dir/a.jsonl"], "does not exist"),
    ],
)
def test_command_refuses_bad_arguments_and_deletes_nothing(args, error):
    session = close_at(full_session(visitor="v1"), days_ago(40))
    with pytest.raises(CommandError, match=error):
        call_command("ds_retention", *args)
    assert DurableSession.objects.filter(pk=session.pk).exists()


# --- erasure --------------------------------------------------------------------------------


def test_erasing_a_user_leaves_nothing_of_them_and_everything_of_others(operator):
    alice, bob = make_user("alice"), make_user("bob")
    hers = [full_session(alice, operator=operator), full_session(alice)]
    close_at(hers[1], days_ago(1))
    others = [full_session(bob, operator=operator), full_session(visitor="v-x", operator=operator)]
    before = footprint([s.pk for s in others])
    theirs = footprint([s.pk for s in hers])

    record = service.erase_customer(user=alice, actor=operator, via="python")

    assert set(footprint([s.pk for s in hers]).values()) == {0}
    assert footprint([s.pk for s in others]) == before
    assert record.sessions == 2 and record.subject == "user" and record.actor == operator
    theirs["durable_sessions.DurableSession"] = theirs.pop("sessions")
    assert record.counts == {label: n for label, n in theirs.items() if n}
    # The audit keeps counts only: no id, name, visitor id or text of the customer.
    audit = json.dumps(
        {f.name: str(getattr(record, f.attname)) for f in DeletionRecord._meta.fields}
    )
    for personal in ("alice", SECRET_TEXT, str(hers[0].pk), str(hers[1].pk)):
        assert personal not in audit


def test_erasing_a_visitor_also_drops_the_device_links_their_browser_opened():
    theirs = full_session(visitor="v-erase")
    other = full_session(visitor="v-keep")
    link = service.devices.create_device_grant(other.id)
    service.devices.redeem_device_grant(link.token, "v-erase")  # their phone, someone's chat
    record = service.erase_customer(visitor="v-erase")
    assert not DurableSession.objects.filter(pk=theirs.pk).exists()
    assert not DeviceGrant.objects.filter(redeemed_by_visitor="v-erase").exists()
    assert DeviceGrant.objects.filter(session=other).count() == 1  # the owner's own phone
    assert record.counts["durable_sessions.DeviceGrant"] == 2


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({}, "user"),
        ({"visitor": "x" * 65}, "visitor"),
        ({"visitor": 5}, "visitor"),
        ({"visitor": "v1", "batch_size": 0}, "batch_size"),
        ({"visitor": "v1", "via": "mail"}, "via"),
    ],
)
def test_erase_refuses_bad_input_and_deletes_nothing(kwargs, field):
    session = full_session(visitor="v1")
    with pytest.raises(InvalidInput) as refused:
        service.erase_customer(**kwargs)
    assert refused.value.field == field
    assert DurableSession.objects.filter(pk=session.pk).exists()
    assert not DeletionRecord.objects.exists()


def test_erase_command_by_user_visitor_and_session(capsys):
    alice = make_user("alice")
    mine, anon, third = (
        full_session(alice),
        full_session(visitor="v-9"),
        full_session(visitor="v-7"),
    )
    call_command("ds_erase", "--user", "alice", "--json")
    assert json.loads(capsys.readouterr().out)["deleted"] == 1
    call_command("ds_erase", "--visitor", "v-9")
    call_command("ds_erase", "--session", str(third.pk))
    assert not DurableSession.objects.filter(pk__in=[mine.pk, anon.pk, third.pk]).exists()
    assert DeletionRecord.objects.filter(via="command").count() == 3
    for args in (
        [],
        ["--user", "nobody"],
        ["--session", "not-a-uuid"],
        ["--user", "a", "--visitor", "b"],
    ):
        with pytest.raises(CommandError):
            call_command("ds_erase", *args)


# --- live connections -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_live_connections_of_an_erased_session_close_with_4410():
    session = await make_async(service.create_session)(visitor="v-live", title="t")
    store = await make_async(visitor_session)("v-live")
    comm, _ = await open_ws(session.id, store=store)
    await make_async(service.erase_customer)(visitor="v-live")
    while True:
        output = await comm.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            break
    assert output["code"] == CLOSE_GONE == 4410
    await comm.disconnect()


# --- admin and API --------------------------------------------------------------------------


def erasers(*perms: str) -> Any:
    user = make_user("eraser", operator=True, staff=True)
    for codename in perms:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="durable_sessions", codename=codename)
        )
    client = Client()
    client.force_login(user)
    return user, client


def test_admin_erase_asks_first_then_erases_the_customers_of_the_selected_sessions():
    user, client = erasers("view_durablesession", "delete_durablesession", "view_deletionrecord")
    alice = make_user("alice")
    hers = [full_session(alice), full_session(alice)]
    other = full_session(visitor="v-keep")
    changelist = reverse("admin:durable_sessions_durablesession_changelist")
    data = {"action": "erase_customers", "_selected_action": [str(hers[0].pk)]}

    confirm = client.post(changelist, data)
    assert confirm.status_code == 200
    assert b"every session" in confirm.content and b"2 sessions" in confirm.content
    assert DurableSession.objects.count() == 3

    done = client.post(changelist, {**data, "_ds_confirm_erase": "1"}, follow=True)
    assert done.status_code == 200
    assert list(DurableSession.objects.values_list("pk", flat=True)) == [other.pk]
    record = DeletionRecord.objects.get()
    assert (record.via, record.actor, record.sessions) == ("admin", user, 2)
    audit = client.get(reverse("admin:durable_sessions_deletionrecord_changelist"))
    assert audit.status_code == 200 and b"erasure" in audit.content.lower()


def test_admin_erase_is_offered_only_with_the_delete_permission():
    _, client = erasers("view_durablesession", "change_durablesession")
    full_session(visitor="v1")
    page = client.get(reverse("admin:durable_sessions_durablesession_changelist"))
    assert b'value="erase_customers"' not in page.content


def api_erase(client: Client, session: Any, body: Any) -> Any:
    path = reverse("durable_sessions:session-erase-customer", args=[session.pk])
    return client.post(path, json.dumps(body), content_type=JSON)


def test_api_erases_the_customer_for_operators_with_the_delete_permission():
    _, client = erasers("delete_durablesession")
    alice = make_user("alice")
    hers = [full_session(alice), full_session(alice)]
    other = full_session(visitor="v-keep")
    response = api_erase(client, hers[1], {"confirm": True})
    assert response.status_code == 200
    body = response.json()
    assert body["sessions"] == 2 and body["counts"]["durable_sessions.Event"] > 0
    assert list(DurableSession.objects.values_list("pk", flat=True)) == [other.pk]
    assert DeletionRecord.objects.get(pk=body["record"]).via == "api"


def test_api_refuses_operators_without_the_permission_and_customers():
    session = full_session(visitor="v1")
    _, client = erasers()
    refused = api_erase(client, session, {"confirm": True})
    assert refused.status_code == 403
    assert "delete_durablesession" in refused.json()["error"]["message"]
    customer = Client()
    store = customer.session
    store[VISITOR_KEY] = "v1"
    store.save()
    assert api_erase(customer, session, {"confirm": True}).status_code == 403
    assert DurableSession.objects.filter(pk=session.pk).exists()


def fuzz_client() -> Client:
    """One eraser for all the examples (the database persists across them)."""
    user = get_user_model().objects.filter(username="eraser").first()
    if user is None:
        user, _ = erasers("delete_durablesession")
    client = Client()
    client.force_login(user)
    return client


@settings(max_examples=examples(40), deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.one_of(
        st.dictionaries(st.text(max_size=8), st.none() | st.booleans() | st.text(max_size=5)),
        st.lists(st.integers(), max_size=3),
        st.text(max_size=10),
        st.none(),
    )
)
def test_fuzz_api_erase_body_gets_a_clear_error_and_deletes_nothing(body):
    if body == {"confirm": True}:
        return
    session = DurableSession.objects.first() or full_session(visitor="v-fuzz")
    response = api_erase(fuzz_client(), session, body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] and error["message"]
    assert DurableSession.objects.filter(pk=session.pk).exists()


@settings(max_examples=examples(40), deadline=None, suppress_health_check=list(HealthCheck))
@given(
    visitor=st.one_of(
        st.text(max_size=80),
        st.integers(),
        st.none(),
        st.lists(st.text(max_size=3), max_size=2),
    )
)
@example(visitor="\x00")  # PostgreSQL refuses NUL in a query: refused before it gets there
@example(visitor="v\ud800")
def test_fuzz_erase_visitor_erases_that_visitor_only_or_refuses(visitor):
    keep = DurableSession.objects.filter(owner_visitor="v-keep-fuzz").first()
    keep = keep or full_session(visitor="v-keep-fuzz")
    before = footprint([keep.pk])
    try:
        record = service.erase_customer(visitor=visitor)
    except InvalidInput as refused:
        assert refused.field in ("user", "visitor") and refused.message
    else:
        assert isinstance(visitor, str) and 0 < len(visitor) <= 64
        assert record.sessions == 0 or visitor != "v-keep-fuzz"
    if visitor != "v-keep-fuzz":
        assert footprint([keep.pk]) == before


@pytest.mark.django_db(transaction=True)
async def test_a_long_poll_on_an_erased_session_answers_404_when_it_goes():
    session = await make_async(service.create_session)(visitor="v-poll", title="t")
    client = AsyncClient()
    await client.aforce_login(await make_async(make_user)("olga-poll", operator=True))

    async def erase_later() -> None:
        await asyncio.sleep(0.3)
        await make_async(service.erase_customer)(visitor="v-poll")

    eraser = asyncio.create_task(erase_later())
    started = time.monotonic()
    path = reverse("durable_sessions:session-events", args=[session.pk])
    response = await client.get(f"{path}?after_seq=1&wait=30")
    elapsed = time.monotonic() - started
    await eraser
    assert response.status_code == 404
    assert elapsed < 20  # woken by the deletion, not by the end of the wait
