"""Edits and regenerations keep every version; the shown branch is what agents and pages see,
it changes by events every device follows, and resume across a change is exact."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from hypothesis import given, settings
from hypothesis import strategies as st

from durable_sessions import service
from durable_sessions.errors import HumanInControl, InvalidInput, NotEditable, ServiceError
from durable_sessions.models import (
    AgentRun,
    DurableSession,
    Event,
    Message,
    ParticipantKind,
    RunStatus,
)
from durable_sessions.runtime.turns import build_turn
from durable_sessions.service import runs
from tests.factories import anonymous_session, make_user, open_ws
from tests.hypothesis_profiles import examples
from tests.test_runtime import frames_until, runtime_settings

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async


def answered(session, question: str, answer: str) -> tuple[Message, Message]:
    """The customer asks, the agent answers (as a worker would, without one)."""
    customer = service.participant_for(session.id, ParticipantKind.CUSTOMER)
    asked = service.post_message(session.id, author=customer, content=question).message
    run = runs.claim(AgentRun.objects.filter(status=RunStatus.PENDING).latest("id").pk, "w")
    reply = service.start_assistant_message(session.id)
    runs.attach_message(run.pk, reply.pk)
    service.append_delta(reply, answer)
    service.finish_assistant_message(reply)
    runs.finish(run.pk, "w", RunStatus.COMPLETED)
    return asked, Message.objects.get(pk=reply.pk)


def shown(session) -> list[str]:
    return list(
        Message.objects.filter(session_id=session.id, hidden_under__isnull=True)
        .order_by("seq")
        .values_list("content", flat=True)
    )


def last_seq(session) -> int:
    return DurableSession.objects.get(pk=session.pk).last_seq


def test_an_edit_keeps_the_old_branch_and_the_agent_reads_only_the_new(settings):
    runtime_settings(settings)
    session, _ = anonymous_session()
    answered(session, "Where is my order?", "It shipped.")
    q2, a2 = answered(session, "When does it arrive?", "Tomorrow.")
    result = service.edit_message(session.id, q2.pk, "Can I change the address?", client_id="e1")
    version = result.message
    assert version.version_of_id == q2.pk and not result.duplicate
    assert shown(session) == ["Where is my order?", "It shipped.", "Can I change the address?"]
    assert Message.objects.count() == 5  # nothing deleted
    switched, created = Event.objects.filter(seq__gte=result.seq - 1).order_by("seq")[:2]
    assert switched.type == "branch.switched" and created.type == "message.created"
    assert switched.payload == {
        "group": q2.pk,
        "active": version.pk,
        "shown": [],
        "hidden": [q2.pk, a2.pk],
    }
    assert created.payload["message"]["version_of"] == q2.pk
    assert AgentRun.objects.filter(trigger=version, status=RunStatus.PENDING).exists()
    history = [m.content for m in build_turn(session.id).history]
    assert history == ["Where is my order?", "It shipped.", "Can I change the address?"]
    # A retry stores nothing more.
    before = last_seq(session)
    again = service.edit_message(session.id, q2.pk, "Can I change the address?", client_id="e1")
    assert again.duplicate and again.message.pk == version.pk and last_seq(session) == before


def test_switching_back_shows_the_old_branch_as_it_was(settings):
    runtime_settings(settings)
    session, _ = anonymous_session()
    q1, a1 = answered(session, "first", "one")
    version = service.edit_message(session.id, q1.pk, "first, edited").message
    assert service.switch_branch(session.id, q1.pk)
    assert shown(session) == ["first", "one"]
    event = Event.objects.filter(type="branch.switched").latest("seq")
    assert event.payload == {
        "group": q1.pk,
        "active": q1.pk,
        "shown": [q1.pk, a1.pk],
        "hidden": [version.pk],
    }
    assert not service.switch_branch(session.id, q1.pk)  # shown already: nothing written
    # The edited branch ends with a question nobody answered: showing it again asks the agent.
    assert service.switch_branch(session.id, version.pk)
    assert shown(session) == ["first, edited"]
    assert AgentRun.objects.filter(trigger=version, status=RunStatus.PENDING).exists()


def test_a_regenerated_answer_is_a_new_version_of_the_old(settings):
    runtime_settings(settings)
    session, _ = anonymous_session()
    q1, a1 = answered(session, "hello", "Hi!")
    assert service.regenerate(session.id, a1.pk) == [a1.pk]
    assert shown(session) == ["hello"]
    run = AgentRun.objects.get(status=RunStatus.PENDING)
    assert (run.trigger_id, run.regenerates_id) == (q1.pk, a1.pk)
    runs.claim(run.pk, "w")
    reply = service.start_assistant_message(session.id)
    assert reply.version_of_id == a1.pk
    created = Event.objects.get(seq=reply.seq)
    assert created.payload["message"]["version_of"] == a1.pk
    assert created.payload["message"]["active"] is True


def test_operators_messages_and_human_control_are_refused_and_change_nothing(settings):
    runtime_settings(settings)
    session, _ = anonymous_session()
    q1, a1 = answered(session, "hello", "Hi!")
    olga = make_user("olga", operator=True)
    reply = service.operator_reply(session.id, operator=olga, content="Olga here").message
    before = last_seq(session)
    with pytest.raises(HumanInControl) as refused:
        service.edit_message(session.id, q1.pk, "changed")
    assert refused.value.code == "human_in_control"
    with pytest.raises(HumanInControl):
        service.regenerate(session.id, a1.pk)
    service.hand_back(session.id, olga)
    before = last_seq(session)
    with pytest.raises(NotEditable) as refused:
        service.edit_message(session.id, reply.pk, "changed")  # the operator's
    assert refused.value.code == "not_editable"
    with pytest.raises(NotEditable):
        service.edit_message(session.id, q1.pk, "changed")  # an operator wrote after it
    with pytest.raises(NotEditable):
        service.regenerate(session.id, a1.pk)
    notice = Message.objects.filter(role="system").first()
    with pytest.raises(NotEditable):
        service.edit_message(session.id, notice.pk, "changed")
    assert last_seq(session) == before and shown(session) == list(
        Message.objects.order_by("seq").values_list("content", flat=True)
    )


any_id = st.one_of(
    st.integers(),
    st.integers(2**62, 2**80),
    st.booleans(),
    st.text(max_size=5),
    st.none(),
    st.floats(),
)


@settings(max_examples=examples(40), deadline=None)
@given(message_id=any_id, content=st.one_of(st.text(max_size=30), st.integers(), st.none()))
def test_any_request_is_refused_cleanly_or_done(message_id, content):
    session = DurableSession.objects.order_by("created_at").first()
    if session is None:
        session, _ = anonymous_session("v-fuzz")
        answered(session, "hello", "Hi!")
    before = last_seq(session)
    for call in (
        lambda: service.edit_message(session.id, message_id, content),
        lambda: service.regenerate(session.id, message_id),
        lambda: service.switch_branch(session.id, message_id),
    ):
        try:
            call()
        except (NotEditable, InvalidInput) as exc:
            assert exc.code in ("not_editable", "invalid_field")
            assert last_seq(session) == before
        except ServiceError as exc:  # pragma: no cover - would be a bug
            raise AssertionError(exc.code) from exc
        before = last_seq(session)


async def test_a_switch_on_one_device_shows_on_another_and_resume_is_exact(settings):
    runtime_settings(settings)
    session, store = await db(anonymous_session)()
    q1, a1 = await db(answered)(session, "first", "one")
    laptop, _ = await open_ws(session.id, store=store)
    phone, replayed = await open_ws(session.id, store=store)
    seen = max(f["seq"] for f in replayed if "seq" in f and "at" in f)
    await laptop.send_json_to(
        {"type": "message.edit", "message_id": q1.pk, "content": "edited", "client_id": "e1"}
    )
    ack = await frames_until(laptop, lambda f: f.get("type") == "ack")
    version = ack[-1]["message"]
    assert version["version_of"] == q1.pk and version["active"] is True
    await frames_until(phone, lambda f: f.get("type") == "message.created")
    await laptop.send_json_to({"type": "branch.switch", "message_id": q1.pk, "ref": "s"})
    assert (await frames_until(laptop, lambda f: f.get("type") == "ack"))[-1]["changed"]
    got = await frames_until(
        phone, lambda f: f.get("type") == "branch.switched" and f["data"]["active"] == q1.pk
    )
    assert got[-1]["data"]["shown"] == [q1.pk, a1.pk]
    # A device that was away resumes after `seen`: exactly what followed, in order.
    back, frames = await open_ws(session.id, store=store, after_seq=seen)
    snapshot = frames[0]
    assert snapshot["branches"] == {"hidden": [version["id"]]}
    replay = [f for f in frames if "seq" in f and "at" in f]
    total = await db(last_seq)(session)
    assert [e["seq"] for e in replay] == list(range(seen + 1, total + 1))
    assert [e["type"] for e in replay].count("branch.switched") == 2
    # Refused frames: a clear code, nothing written.
    await laptop.send_json_to({"type": "reply.regenerate", "message_id": True, "ref": "b"})
    error = await frames_until(laptop, lambda f: f.get("type") == "error")
    assert (error[-1]["code"], error[-1]["field"]) == ("invalid_field", "message_id")
    await laptop.send_json_to({"type": "branch.switch", "message_id": 10**9, "ref": "c"})
    error = await frames_until(laptop, lambda f: f.get("type") == "error")
    assert error[-1]["code"] == "not_editable"
    assert await db(last_seq)(session) == total
    for comm in (laptop, phone, back):
        await comm.disconnect()


def test_the_rest_api_edits_regenerates_and_switches_for_the_customer_only(settings):
    from django.test import Client

    from tests.test_api import as_visitor, error, url

    runtime_settings(settings)
    session, _ = anonymous_session("v-rest")
    q1, a1 = answered(session, "first", "one")
    client = as_visitor(Client(), "v-rest")
    base = url("session-messages", session)
    edited = client.post(
        f"{base}{q1.pk}/edit/", {"content": "first!", "client_id": "e1"}, "application/json"
    )
    assert edited.status_code == 201, edited.content
    version = edited.json()["message"]
    assert (version["version_of"], version["active"]) == (q1.pk, True)
    switched = client.post(f"{base}{q1.pk}/activate/")
    assert (switched.status_code, switched.json()) == (200, {"changed": True})
    regenerated = client.post(f"{base}{a1.pk}/regenerate/")
    assert (regenerated.status_code, regenerated.json()) == (200, {"hidden": [a1.pk]})
    before = last_seq(session)
    for path, body in (
        (f"{base}{q1.pk}/edit/", {"content": 5}),
        (f"{base}{q1.pk}/edit/", {"content": "x", "extra": 1}),
        (f"{base}999999/activate/", None),
        (f"{base}{a1.pk}/edit/", {"content": "x"}),
    ):
        refused = client.post(path, body, "application/json") if body else client.post(path)
        assert refused.status_code in (400, 409) and error(refused)["code"]
    olga = make_user("olga", operator=True)
    operator = Client()
    operator.force_login(olga)
    assert operator.post(f"{base}{q1.pk}/activate/").status_code == 403
    assert last_seq(session) == before


def test_the_admin_shows_which_version_is_shown_and_that_others_exist(admin_client, settings):
    from tests.test_admin import change_url

    runtime_settings(settings)
    session, _ = anonymous_session()
    q1, _ = answered(session, "first", "one")
    service.edit_message(session.id, q1.pk, "first, edited")
    html = admin_client.get(change_url(session)).content.decode()
    assert "Version 1 of 2. Not on the shown branch (kept)." in html
    assert "Version 2 of 2. On the shown branch." in html
    assert html.count("Not on the shown branch (kept).") == 2  # the question and its answer


def test_the_rest_message_list_shows_the_shown_branch_unless_all_versions_are_asked(settings):
    from django.test import Client

    from tests.test_api import as_visitor, error, url

    runtime_settings(settings)
    session, _ = anonymous_session("v-list")
    q1, a1 = answered(session, "first", "one")
    service.edit_message(session.id, q1.pk, "first, edited")
    edited = Message.objects.get(version_of=q1)
    client = as_visitor(Client(), "v-list")
    base = url("session-messages", session)

    def listed(query: str = "") -> list[tuple[str, int, int, bool, int | None]]:
        response = client.get(base + query)
        assert response.status_code == 200, response.content
        return [
            (m["content"], m["version"], m["versions"], m["active"], m["hidden_under"])
            for m in response.json()["messages"]
        ]

    # What the page shows: the edited question, and nothing of the old branch.
    shown_page = [("first, edited", 2, 2, True, None)]
    assert listed() == listed("?versions=active") == shown_page
    assert [c for c, *_ in listed()] == shown(session)
    assert listed("?versions=all") == [
        ("first", 1, 2, False, q1.pk),
        ("one", 1, 1, False, q1.pk),
        ("first, edited", 2, 2, True, None),
    ]
    # Showing the old version again swaps what each list holds.
    service.switch_branch(session.id, q1.pk)
    assert listed() == [("first", 1, 2, True, None), ("one", 1, 1, True, None)]
    assert ("first, edited", 2, 2, False, edited.pk) in listed("?versions=all")
    # Paging follows the shown branch.
    first_page = client.get(base + "?limit=1").json()
    assert [m["content"] for m in first_page["messages"]] == ["first"]
    rest = client.get(base + f"?after_seq={first_page['next_after_seq']}").json()
    assert [m["content"] for m in rest["messages"]] == ["one"]
    assert a1.pk in [m["id"] for m in rest["messages"]]
    refused = client.get(base + "?versions=some")
    assert refused.status_code == 400 and error(refused)["field"] == "versions"
