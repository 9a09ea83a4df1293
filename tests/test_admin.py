"""The Django admin of sessions: read-only pages, escaped text, bounded queries, and
actions that change sessions only through the session service."""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from durable_sessions import service
from durable_sessions.admin.actions import FROM_DETAIL_PARAM
from durable_sessions.admin.detail import TRANSCRIPT_PAGE_SIZE
from durable_sessions.models import (
    AgentRun,
    Control,
    DurableSession,
    Event,
    HandoffRecord,
    Message,
    MessageState,
    Participant,
    ParticipantKind,
    Status,
)
from durable_sessions.service import compaction
from tests.factories import make_user

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:durable_sessions_durablesession_changelist"
EVENTS = "admin:durable_sessions_event_changelist"
XSS = "<script>alert(1)</script> <img src=x onerror=alert(1)>"
XSS_ESCAPED = ["&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=alert(1)&gt;"]
XSS_RAW = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"]
# Upper bounds measured with headroom; what matters as much is that they do not grow.
LIST_MAX_QUERIES = 8
DETAIL_MAX_QUERIES = 14


# --- builders -------------------------------------------------------------------------------


def customer(session: DurableSession) -> Participant:
    return service.participant_for(session.id, ParticipantKind.CUSTOMER)


def new_session(title: str = "help", *, owner: Any = None, messages: int = 0) -> DurableSession:
    session = service.create_session(owner=owner, visitor="" if owner else "visitor-x", title=title)
    for n in range(messages):
        service.post_message(session.id, author=customer(session), content=f"message {n}")
    return session


def change_url(session: DurableSession) -> str:
    return reverse("admin:durable_sessions_durablesession_change", args=[session.pk])


def event_types(session: DurableSession, after: int = 0) -> list[str]:
    return list(
        Event.objects.filter(session=session, seq__gt=after)
        .order_by("seq")
        .values_list("type", flat=True)
    )


def refreshed(session: DurableSession) -> DurableSession:
    return DurableSession.objects.get(pk=session.pk)


def results(response: Any) -> list[DurableSession]:
    return list(response.context["cl"].result_list)


def run_action(
    client: Client, action: str, *sessions: DurableSession, follow: bool = True, **extra: str
) -> Any:
    """POST an action as the changelist form does; follows the redirect by default."""
    data = {"action": action, "_selected_action": [str(s.pk) for s in sessions], **extra}
    return client.post(reverse(CHANGELIST), data, follow=follow)


def page_messages(response: Any) -> list[tuple[str, str]]:
    """The admin messages shown on the page the action redirected to."""
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


@pytest.fixture
def writes_outside_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Records every write to the app's tables that is not made inside a service call."""
    depth = [0]
    outside: list[str] = []

    def tracked(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1

        return wrapper

    for name, fn in inspect.getmembers(service, inspect.isfunction):
        if fn.__module__.startswith(service.__name__) and not name.startswith("_"):
            monkeypatch.setattr(service, name, tracked(fn))
    tables = [m._meta.db_table for m in (DurableSession, Participant, Message, Event, AgentRun)]
    write = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)

    def watch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if depth[0] == 0 and write.match(sql) and any(t in sql for t in tables):
            outside.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        yield outside


# --- the list -------------------------------------------------------------------------------


def test_list_shows_owner_control_operator_counts_and_waiting_time(admin_client):
    alice = make_user("alice")
    owned = new_session("billing", owner=alice, messages=3)
    queued = new_session("refund", messages=1)
    service.request_handoff(queued.id, by=customer(queued), reason="need a person")
    operator = make_user("olga", operator=True)
    held = new_session("login")
    service.operator_reply(held.id, operator=operator, content="Olga here")

    response = admin_client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    rows = {s.pk: s for s in results(response)}
    # The operator's message and the system notice that she joined.
    assert rows[owned.pk].message_count == 3 and rows[held.pk].message_count == 2
    assert rows[queued.pk].queued_since is not None
    assert rows[owned.pk].queued_since is None and rows[held.pk].queued_since is None
    assert (
        rows[owned.pk].last_activity == Event.objects.filter(session=owned).latest("seq").created_at
    )
    html = response.content.decode()
    assert "alice" in html and "anonymous visitor visitor-" in html
    assert "Waiting for a human" in html and "Human operator" in html and "olga" in html
    assert "message 2" in html  # the last message's preview


def test_list_filters_by_control_status_operator_and_date(admin_client):
    ai = new_session("ai")
    queued = new_session("queued")
    service.request_handoff(queued.id, by=None)
    closed = new_session("closed")
    service.close_session(closed.id)
    olga = make_user("olga", operator=True)
    held = new_session("held")
    service.change_control(held.id, Control.HUMAN, operator=olga)
    url = reverse(CHANGELIST)

    def found(**params: Any) -> set[Any]:
        response = admin_client.get(url, params)
        assert response.status_code == 200
        return {s.pk for s in results(response)}

    assert found(control__exact="queued") == {queued.pk}
    assert found(control__exact="ai", status__exact="open") == {ai.pk}
    assert found(status__exact="closed") == {closed.pk}
    assert found(assigned_operator__id__exact=olga.pk) == {held.pk}
    day = {"created_at__gte": "2000-01-01 00:00:00+00:00"}
    assert found(**day, created_at__lt="2000-01-02 00:00:00+00:00") == set()
    assert len(found(**day)) == 4


def test_search_finds_sessions_by_user_and_by_message_text_once_each(admin_client):
    alice = make_user("alice")
    hers = new_session("first", owner=alice)
    other = new_session("second")
    for text in ["my parcel never arrived", "the parcel is lost", "parcel number 12"]:
        service.post_message(other.id, author=customer(other), content=text)
    url = reverse(CHANGELIST)

    assert [s.pk for s in results(admin_client.get(url, {"q": "alice"}))] == [hers.pk]
    # Three messages match, the session is listed once and its count is not inflated.
    found = results(admin_client.get(url, {"q": "parcel"}))
    assert [(s.pk, s.message_count) for s in found] == [(other.pk, 3)]
    assert [s.pk for s in results(admin_client.get(url, {"q": str(hers.pk)}))] == [hers.pk]
    assert results(admin_client.get(url, {"q": "nothing-like-this"})) == []


# --- the session's page ---------------------------------------------------------------------


def test_detail_shows_transcript_states_participants_and_handoff_timeline(admin_client):
    session = new_session("states", messages=1)
    failed = service.start_assistant_message(session.id)
    service.append_delta(failed, "Let me ch")
    service.fail_assistant_message(failed, "model timeout")
    cancelled = service.start_assistant_message(session.id)
    service.append_delta(cancelled, "I think the answer")
    service.request_handoff(session.id, by=customer(session), reason="want a human")
    olga = make_user("olga", operator=True)
    service.operator_reply(session.id, operator=olga, content="Olga here")
    service.change_control(session.id, Control.AI, reason="resolved")
    streaming = service.start_assistant_message(session.id)
    service.append_delta(streaming, "Still typ")

    response = admin_client.get(change_url(session))

    assert response.status_code == 200
    states = [(e.message.pk, e.message.state) for e in response.context["ds_transcript"]]
    assert states[1:3] == [(failed.pk, MessageState.FAILED), (cancelled.pk, "cancelled")]
    assert states[-1] == (streaming.pk, MessageState.STREAMING)
    html = response.content.decode()
    for text in ["Let me ch", "model timeout", "I think the answer", "Stopped (handoff)"]:
        assert text in html
    assert "Still typ" in html and "streaming…" in html
    names = [p.display_name for p in response.context["ds_participants"]]
    # The system participant authors the notices of transitions.
    assert [n for n in names if n != "System"] == ["Visitor", "Assistant", "olga"]
    timeline = [
        (c.previous, c.control, c.reason, c.by, c.operator) for c in response.context["ds_timeline"]
    ]
    assert timeline == [
        ("AI agent", "Waiting for a human", "want a human", "Visitor (Customer)", ""),
        ("Waiting for a human", "Human operator", "operator replied", "olga (Operator)", "olga"),
        ("Human operator", "AI agent", "resolved", "", ""),
    ]
    log_url = reverse(EVENTS) + f"?session__exact={session.pk}"
    assert log_url in html


def test_long_transcript_is_paged(admin_client):
    session = new_session("long", messages=TRANSCRIPT_PAGE_SIZE + 5)

    first = admin_client.get(change_url(session))
    last = admin_client.get(change_url(session), {"transcript_page": 2})

    assert len(first.context["ds_transcript"]) == TRANSCRIPT_PAGE_SIZE
    rest = [e.message.content for e in last.context["ds_transcript"]]
    assert rest == [f"message {n}" for n in range(TRANSCRIPT_PAGE_SIZE, TRANSCRIPT_PAGE_SIZE + 5)]
    assert "transcript_page=2" in first.content.decode()


def test_event_log_link_lists_only_that_sessions_events(admin_client):
    session = new_session("mine", messages=2)
    new_session("other", messages=4)

    response = admin_client.get(reverse(EVENTS), {"session__exact": str(session.pk)})

    assert response.status_code == 200
    assert [(e.session_id, e.seq) for e in results(response)] == [
        (session.pk, n) for n in (1, 2, 3)
    ]
    assert "Event log of mine" in response.content.decode()
    only_created = admin_client.get(
        reverse(EVENTS), {"session__exact": str(session.pk), "type": "session.created"}
    )
    assert [e.seq for e in results(only_created)] == [1]


def test_event_log_reads_well_full_times_short_ids_and_payloads_that_open(admin_client):
    session = new_session("readable", messages=1)
    event = Event.objects.filter(session=session, type="message.created").get()

    html = admin_client.get(reverse(EVENTS), {"session__exact": str(session.pk)}).content.decode()

    local = timezone.localtime(event.created_at)
    stamp = local.strftime("%Y-%m-%d %H:%M:%S.") + f"{local.microsecond // 1000:03d}"
    assert stamp in html  # seconds and milliseconds, not "Nov. 29, 2026, 10:58 p.m."
    short = str(session.pk).split("-")[0]
    assert re.search(rf'title="{session.pk}" class="ds-short-id">{short}</a>', html)
    # The whole payload is there, pretty-printed, behind its one-line summary.
    row = re.search(
        r'<details class="ds-payload-details"><summary>(.*?)</summary>'
        r'<pre class="ds-payload">(.*?)</pre></details>',
        html.split("message.created")[1],
        re.S,
    )
    assert row is not None
    assert row.group(1).endswith("…")
    assert json.loads(row.group(2).replace("&quot;", '"'))["message"]["content"] == "message 0"
    assert "durable_sessions/admin.css" in html


# --- untrusted text -------------------------------------------------------------------------


def test_markup_in_messages_names_and_reasons_is_shown_as_text(admin_client):
    session = new_session(XSS)
    service.post_message(session.id, author=customer(session), content=XSS)
    service.request_handoff(session.id, by=customer(session), reason=XSS)
    event = Event.objects.filter(session=session, type="control.changed").latest("seq")

    pages = {
        "list": admin_client.get(reverse(CHANGELIST)),
        "detail": admin_client.get(change_url(session)),
        "event log": admin_client.get(reverse(EVENTS), {"session__exact": str(session.pk)}),
        "event": admin_client.get(reverse("admin:durable_sessions_event_change", args=[event.pk])),
    }

    for name, response in pages.items():
        html = response.content.decode()
        assert response.status_code == 200, name
        for escaped in XSS_ESCAPED:
            assert escaped in html, name
        for raw in XSS_RAW:
            assert raw not in html, name


# --- nothing is written except through the actions -------------------------------------------


def test_sessions_cannot_be_added_edited_or_deleted(admin_client):
    session = new_session("keep")
    before = list(DurableSession.objects.values().filter(pk=session.pk))
    base = "admin:durable_sessions_durablesession"

    assert admin_client.get(reverse(f"{base}_add")).status_code == 403
    edit = admin_client.post(change_url(session), {"title": "edited", "status": "closed"})
    assert edit.status_code == 403
    assert admin_client.post(reverse(f"{base}_delete", args=[session.pk])).status_code == 403
    page = admin_client.get(change_url(session)).content.decode()
    assert 'name="_save"' not in page and "deletelink" not in page
    actions = dict(
        admin_client.get(reverse(CHANGELIST)).context["action_form"].fields["action"].choices
    )
    assert "delete_selected" not in actions
    assert list(DurableSession.objects.values().filter(pk=session.pk)) == before


def test_messages_and_events_cannot_be_added_edited_or_deleted(admin_client):
    session = new_session("log", messages=1)
    event = Event.objects.filter(session=session).latest("seq")
    base = "admin:durable_sessions_event"

    assert admin_client.get(reverse(f"{base}_add")).status_code == 403
    edit = admin_client.post(
        reverse(f"{base}_change", args=[event.pk]), {"type": "x", "payload": "{}"}
    )
    assert edit.status_code == 403
    assert admin_client.post(reverse(f"{base}_delete", args=[event.pk])).status_code == 403
    # Messages and participants have no admin pages of their own: the transcript is read-only.
    assert admin_client.get("/admin/durable_sessions/message/").status_code == 404
    assert admin_client.get("/admin/durable_sessions/participant/").status_code == 404
    assert list(Event.objects.filter(session=session).values_list("seq", "type")) == [
        (1, "session.created"),
        (2, "message.created"),
    ]


# --- actions --------------------------------------------------------------------------------


def test_close_goes_through_the_service_and_stops_the_reply(admin_client, writes_outside_service):
    session = new_session("to close")
    reply = service.start_assistant_message(session.id)
    service.append_delta(reply, "partial")
    before = refreshed(session).last_seq

    response = run_action(admin_client, "close_sessions", session)

    assert response.redirect_chain == [(reverse(CHANGELIST), 302)]
    assert writes_outside_service == []
    assert event_types(session, after=before) == [
        "message.cancelled",
        "session.closed",
        "message.created",  # the notice the customer sees
    ]
    assert refreshed(session).status == Status.CLOSED
    reply.refresh_from_db()
    assert (reply.state, reply.content) == (MessageState.CANCELLED, "partial")
    entry = LogEntry.objects.get(object_id=str(session.pk))
    assert entry.action_flag == CHANGE and "Closed" in entry.change_message
    # The audit row names the admin who closed it (it had no actor before).
    record = HandoffRecord.objects.get(session=session, action="close")
    assert (record.actor.get_username(), record.actor_kind) == ("admin", "staff")


def test_close_reports_an_already_closed_session_and_applies_the_others(admin_client):
    closed = new_session("done")
    service.close_session(closed.id)
    open_one = new_session("open")
    closed_seq = refreshed(closed).last_seq

    response = run_action(admin_client, "close_sessions", closed, open_one)

    notes = page_messages(response)
    assert (
        "warning",
        "“done” (" + str(closed.pk)[:8] + "): not changed, it was already closed.",
    ) in notes
    assert ("success", "Closed: 1 session.") in notes
    assert refreshed(open_one).status == Status.CLOSED
    assert refreshed(closed).last_seq == closed_seq
    assert event_types(closed, after=closed_seq) == []


def test_return_to_ai_changes_control_with_a_reason(admin_client, writes_outside_service):
    olga = make_user("olga", operator=True)
    held = new_session("held")
    service.change_control(held.id, Control.HUMAN, operator=olga)
    with_ai = new_session("ai")
    closed = new_session("closed")
    service.request_handoff(closed.id, by=None)
    service.close_session(closed.id)
    seqs = {s.pk: refreshed(s).last_seq for s in (held, with_ai, closed)}

    response = run_action(admin_client, "return_to_ai", held, with_ai, closed)

    assert writes_outside_service == []
    event = Event.objects.filter(session=held).latest("seq")
    assert event.type == "control.changed"
    assert (event.payload["previous"], event.payload["control"]) == ("human", "ai")
    # The customer's copy names no staff member; the audit row names the admin.
    assert (
        event.payload["reason"] == "returned to the AI by Support" and event.payload["by"] is None
    )
    record = HandoffRecord.objects.get(session=held, seq=event.seq)
    assert (record.actor.get_username(), record.actor_kind) == ("admin", "staff")
    after = refreshed(held)
    assert (after.control, after.assigned_operator_id) == (Control.AI, None)
    for untouched in (with_ai, closed):
        assert refreshed(untouched).last_seq == seqs[untouched.pk]
    levels = [level for level, _ in page_messages(response)]
    assert sorted(levels) == ["error", "success", "warning"]


def test_escalate_queues_the_session_and_stops_the_ai(admin_client, writes_outside_service):
    session = new_session("escalate")
    reply = service.start_assistant_message(session.id)
    service.append_delta(reply, "Hmm")
    before = refreshed(session).last_seq

    run_action(admin_client, "escalate_to_human", session)
    again = run_action(admin_client, "escalate_to_human", session)

    assert writes_outside_service == []
    # The customer is told, by a system message, that a person will join.
    assert event_types(session, after=before) == [
        "message.cancelled",
        "control.changed",
        "message.created",
    ]
    event = Event.objects.filter(session=session, type="control.changed").latest("seq")
    assert (
        event.payload["control"] == "queued" and event.payload["reason"] == "escalated by Support"
    )
    assert "admin" not in json.dumps(event.payload)
    assert HandoffRecord.objects.get(session=session, seq=event.seq).actor.get_username() == "admin"
    assert event.payload["by"] is None
    assert refreshed(session).control == Control.QUEUED
    assert [lvl for lvl, _ in page_messages(again)] == ["warning"]


def test_action_from_the_session_page_returns_to_it(admin_client):
    session = new_session("page")
    page = admin_client.get(change_url(session)).content.decode()
    assert 'value="escalate_to_human"' in page and 'value="close_sessions"' in page

    response = run_action(
        admin_client, "escalate_to_human", session, follow=False, **{FROM_DETAIL_PARAM: "1"}
    )

    assert response.status_code == 302 and response.url == change_url(session)
    assert 'value="return_to_ai"' in admin_client.get(change_url(session)).content.decode()


def test_export_downloads_session_messages_and_events_without_writing(admin_client):
    session = new_session("export", messages=2)
    service.post_message(session.id, author=customer(session), content=XSS)
    before = refreshed(session).last_seq

    response = run_action(admin_client, "export_json", session)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"] == f'attachment; filename="session-{session.pk}.json"'
    document = json.loads(response.content)
    (exported,) = document["sessions"]
    assert exported["session"]["id"] == str(session.pk)
    assert [m["content"] for m in exported["messages"]] == ["message 0", "message 1", XSS]
    assert [e["seq"] for e in exported["events"]] == list(range(1, before + 1))
    assert [p["kind"] for p in exported["participants"]] == ["customer", "agent"]
    assert refreshed(session).last_seq == before


def test_export_of_many_sessions_reads_a_fixed_number_of_queries(admin_client):
    def export_queries(count: int) -> int:
        sessions = [new_session(f"s{n}", messages=3) for n in range(count)]
        with CaptureQueriesContext(connection) as queries:
            response = run_action(admin_client, "export_json", *sessions)
        assert len(json.loads(response.content)["sessions"]) == count
        return len(queries)

    assert export_queries(2) == export_queries(20)


def test_view_only_staff_can_export_but_not_change_sessions():
    viewer = make_user("viewer", staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_durablesession"),
        Permission.objects.get(codename="view_event"),
    )
    client = Client()
    client.force_login(viewer)
    session = new_session("look only")
    before = refreshed(session).last_seq

    listing = client.get(reverse(CHANGELIST))
    choices = dict(listing.context["action_form"].fields["action"].choices)
    refused = run_action(client, "close_sessions", session)
    exported = run_action(client, "export_json", session)

    assert set(choices) - {""} == {"export_json"}
    page = client.get(change_url(session)).content.decode()
    assert 'value="export_json"' in page and 'value="close_sessions"' not in page
    assert page_messages(refused) == [("warning", "No action selected.")]
    assert refreshed(session).status == Status.OPEN and refreshed(session).last_seq == before
    assert exported.status_code == 200 and json.loads(exported.content)["sessions"]


# --- bounded queries ------------------------------------------------------------------------


def _plain_user(username: str) -> Any:
    # No password: hashing one per user would make up most of the test's time.
    return get_user_model().objects.create(username=username)


def _many_sessions(count: int, *, start: int = 0) -> None:
    """Sessions of distinct owners: a third with the AI, a third queued, a third held."""
    operators = [_plain_user(f"op{start}-{n}") for n in range(3)]
    for n in range(start, start + count):
        session = new_session(f"session {n}", owner=_plain_user(f"user{n}"), messages=2)
        if n % 3 == 1:
            service.request_handoff(session.id, by=None)
        elif n % 3 == 2:
            service.change_control(session.id, Control.HUMAN, operator=operators[n % 3])


def _queries(client: Client, url: str, **params: Any) -> int:
    client.get(url, params)  # warm up per-process caches (content types, ...)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, params)
    assert response.status_code == 200
    return len(queries)


def test_list_queries_do_not_grow_with_the_number_of_sessions(
    admin_client, django_assert_max_num_queries
):
    _many_sessions(3)
    few = _queries(admin_client, reverse(CHANGELIST))
    _many_sessions(27, start=3)
    many = _queries(admin_client, reverse(CHANGELIST))
    searched = _queries(admin_client, reverse(CHANGELIST), q="message")

    with django_assert_max_num_queries(LIST_MAX_QUERIES):
        response = admin_client.get(reverse(CHANGELIST))
    assert len(results(response)) == 30
    assert few == many and searched <= LIST_MAX_QUERIES


def test_detail_queries_do_not_grow_with_the_transcript(
    admin_client, django_assert_max_num_queries
):
    short = new_session("short", messages=5)
    long = new_session("long", messages=200)
    for session in (short, long):
        reply = service.start_assistant_message(session.id)
        service.append_delta(reply, "partial")
        service.request_handoff(session.id, by=None, reason="stuck")

    with django_assert_max_num_queries(DETAIL_MAX_QUERIES):
        response = admin_client.get(change_url(long))
    assert len(response.context["ds_transcript"]) == TRANSCRIPT_PAGE_SIZE
    # Like for like: the last page of the long one also holds the cancelled reply, whose
    # ending is read with one more query.
    last = _queries(admin_client, change_url(long), transcript_page=3)
    assert _queries(admin_client, change_url(short)) == last


def test_a_compacted_session_shows_its_transcript_its_rows_and_that_it_is_compacted(
    admin_client,
):
    session = new_session("compacted", messages=1)
    reply = service.start_assistant_message(session.id)
    for word in ("Folded ", "into ", "one ", "snapshot."):
        service.append_delta(reply, word)
    service.finish_assistant_message(reply)
    page = admin_client.get(change_url(session)).content.decode()
    assert "not compacted" in page

    compaction.compact_message(reply.pk)

    response = admin_client.get(change_url(session))
    html = response.content.decode()
    assert "Folded into one snapshot." in html
    rows = Event.objects.filter(session=session).count()
    assert rows == session_last_seq(session) - 3  # four deltas became one snapshot
    assert f"{rows} events</a>; compacted (1 message.snapshot event in place" in html
    listed = admin_client.get(reverse(EVENTS), {"session__exact": str(session.pk)})
    assert "message.snapshot" in [e.type for e in results(listed)]


def session_last_seq(session: DurableSession) -> int:
    return DurableSession.objects.get(pk=session.pk).last_seq
