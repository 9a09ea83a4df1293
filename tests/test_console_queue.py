"""The queue's rows, search and filters: rows tell conversations apart, the host names
customers and ranks conversations through the console's adapter, a search finds words in
messages, names and titles, and a filter value that is not understood is dropped with a
note on the page, never a server error."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.http import QueryDict
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable_sessions import service
from durable_sessions.models import DurableSession
from handoff_console import queue
from handoff_console.adapter import ConsoleAdapter
from handoff_console.models import CannedReply, ReadMark
from handoff_console.search import QueueFilters, matching_sessions
from tests.factories import make_user
from tests.hypothesis_profiles import examples

pytestmark = pytest.mark.django_db


def chat(title: str, *, visitor: str = "", owner=None, says: str = "hello") -> DurableSession:
    session = service.create_session(
        owner=owner, visitor=visitor or ("" if owner else "visitor-a"), title=title
    )
    customer = service.participant_for(session.id, "customer")
    service.post_message(session.id, author=customer, content=says)
    service.post_message(session.id, author=customer, content="and another thing")
    return session


def rows_by_id(user) -> dict[str, dict]:
    snap = queue.snapshot(user)
    return {row["id"]: row for rows in snap["sections"].values() for row in rows}


class VipAdapter(ConsoleAdapter):
    def customer_name(self, session, participant_name):
        return f"{participant_name} (VIP)"

    def priority(self, session):
        return "urgent"


def test_rows_show_the_first_message_a_visitor_tag_and_the_priority():
    olga = make_user("olga", operator=True)
    first = chat("Order", visitor="visitor-a", says="my parcel never came")
    other = chat("Order", visitor="visitor-b", says="wrong size")
    ranked = chat("Order", visitor="visitor-a")
    DurableSession.objects.filter(pk=ranked.pk).update(metadata={"priority": "high"})

    rows = rows_by_id(olga)

    assert rows[str(first.id)]["first_message"] == "my parcel never came"
    assert rows[str(first.id)]["last_message"]["preview"] == "and another thing"
    # Anonymous visitors are told apart, the same browser keeps its tag, the id stays hidden.
    names = {key: rows[str(s.id)]["customer"] for key, s in (("a", first), ("b", other))}
    assert names["a"].startswith("Visitor ") and names["b"].startswith("Visitor ")
    assert names["a"] != names["b"]
    assert rows[str(ranked.id)]["customer"] == names["a"]
    assert "visitor-a" not in names["a"]
    assert rows[str(first.id)]["priority"] == "normal"
    assert rows[str(ranked.id)]["priority"] == "high"


def test_the_host_names_customers_and_ranks_conversations_through_the_adapter(console_config):
    console_config(ADAPTER="tests.test_console_queue.VipAdapter")
    olga = make_user("olga", operator=True)
    session = chat("Order", owner=make_user("carol"))
    row = rows_by_id(olga)[str(session.id)]
    assert (row["customer"], row["priority"]) == ("carol (VIP)", "urgent")


def test_search_finds_words_in_messages_names_and_titles():
    parcel = chat("Delivery", says="my parcel never came")
    refund = chat("Refund for order 77", says="I want my money back")
    named = chat("Other", owner=make_user("zoe", operator=False))
    assert matching_sessions("parcel") == [str(parcel.id)]
    assert matching_sessions("REFUND 77") == [str(refund.id)]
    assert matching_sessions("zoe") == [str(named.id)]
    assert matching_sessions("parcel money") == []  # every word, in one conversation
    assert matching_sessions("   ") == []


@pytest.mark.parametrize(
    ("query", "expected", "problems"),
    [
        ("q=parcel&state=waiting&assignee=me&waited=5", ("parcel", "waiting", "me", 5), 0),
        ("state=nonsense", ("", "", "", 0), 1),
        ("assignee=<script>", ("", "", "", 0), 1),
        ("waited=-3", ("", "", "", 0), 1),
        ("waited=99999999999999999999", ("", "", "", 0), 1),
        ("assignee=١٢", ("", "", "", 0), 1),  # digits, but not ASCII ones
        (f"q={'x' * 300}", ("x" * 200, "", "", 0), 1),
    ],
)
def test_filters_from_the_url_keep_what_is_understood(query, expected, problems):
    found = QueueFilters.from_query(QueryDict(query))
    assert (found.q, found.state, found.assignee, found.waited) == expected
    assert len(found.problems) == problems


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.dictionaries(
        st.sampled_from(["q", "state", "assignee", "waited", "other"]),
        st.text(max_size=300),
        max_size=5,
    )
)
def test_the_queue_page_answers_any_query_string(params):
    olga = get_user_model().objects.filter(username="olga").first() or make_user(
        "olga", operator=True
    )
    client = Client()
    client.force_login(olga)
    response = client.get(reverse("handoff_console:queue"), params)
    assert response.status_code == 200


# --- the context panel ----------------------------------------------------------------------


class ShopAdapter(ConsoleAdapter):
    def customer_profile(self, session):
        return {
            "fields": [{"label": "Plan", "value": "<b>Gold</b>"}],
            "links": [
                {"label": "Orders", "url": "https://shop.example/orders?u=1"},
                {"label": "Admin", "url": "/admin/auth/user/1/"},
                {"label": "evil", "url": "javascript:alert(1)"},
                {"label": "evil2", "url": "data:text/html,<script>alert(1)</script>"},
                {"label": "evil3", "url": "//elsewhere.example/x"},
                "not a dict",
            ],
        }


def test_the_context_panel_shows_the_hosts_profile_and_only_safe_links(console_config):
    console_config(ADAPTER="tests.test_console_queue.ShopAdapter")
    olga = make_user("olga", operator=True)
    session = chat("Order", owner=make_user("carol"))
    client = Client()
    client.force_login(olga)
    html = client.get(reverse("handoff_console:session", args=[session.id])).content.decode()
    assert '<dt>Plan</dt><dd dir="auto">&lt;b&gt;Gold&lt;/b&gt;</dd>' in html
    assert (
        '<a href="https://shop.example/orders?u=1" target="_blank" '
        'rel="noopener noreferrer nofollow">Orders</a>'
    ) in html
    assert 'href="/admin/auth/user/1/"' in html
    for bad in ("javascript:", "data:text", "elsewhere.example", "evil"):
        assert bad not in html


def test_previous_conversations_are_the_same_customers_only():
    olga = make_user("olga", operator=True)
    carol = make_user("carol")
    old = chat("Last week", owner=carol)
    now = chat("Today", owner=carol)
    chat("Someone else", owner=make_user("dave"))
    visitor_old = chat("Visitor before", visitor="visitor-z")
    visitor_now = chat("Visitor now", visitor="visitor-z")
    client = Client()
    client.force_login(olga)
    page = client.get(reverse("handoff_console:session", args=[now.id]))
    assert [p["title"] for p in page.context["previous"]] == ["Last week"]
    assert page.context["previous"][0]["url"].endswith(f"/sessions/{old.id}/")
    assert page.context["profile"]["fields"][0] == {"label": "Account", "value": "carol"}
    page = client.get(reverse("handoff_console:session", args=[visitor_now.id]))
    assert [p["title"] for p in page.context["previous"]] == ["Visitor before"]
    assert page.context["customer_name"].startswith("Visitor ")
    assert str(visitor_old.id) in page.content.decode()


# --- unread for me --------------------------------------------------------------------------


def test_unread_counts_the_customers_messages_after_my_mark_and_the_mark_only_moves_on():
    olga = make_user("olga", operator=True)
    omar = make_user("omar", operator=True)
    session = chat("Order", says="one")  # two customer messages
    client = Client()
    client.force_login(olga)
    url = reverse("handoff_console:api-read", args=[session.id])
    assert rows_by_id(olga)[str(session.id)]["unread"] == 2

    def post(body):
        return client.post(url, json.dumps(body), content_type="application/json")

    answer = post({"seq": session.last_seq + 1000})  # never past the log
    session.refresh_from_db()
    assert answer.status_code == 200 and answer.json() == {"seq": session.last_seq}
    assert rows_by_id(olga)[str(session.id)]["unread"] == 0
    assert rows_by_id(omar)[str(session.id)]["unread"] == 2  # each operator their own
    assert post({"seq": 1}).json() == {"seq": session.last_seq}  # never back
    customer = service.participant_for(session.id, "customer")
    service.post_message(session.id, author=customer, content="are you there?")
    assert rows_by_id(olga)[str(session.id)]["unread"] == 1


@pytest.mark.parametrize(
    "body", [{}, {"seq": -1}, {"seq": "3"}, {"seq": 1.5}, {"seq": True}, {"seq": 1, "x": 1}, []]
)
def test_a_bad_read_mark_is_a_clear_400_and_changes_nothing(body):
    olga = make_user("olga", operator=True)
    session = chat("Order")
    client = Client()
    client.force_login(olga)
    url = reverse("handoff_console:api-read", args=[session.id])
    response = client.post(url, json.dumps(body), content_type="application/json")
    assert response.status_code == 400 and "error" in response.json()
    assert not ReadMark.objects.exists()


# --- canned replies -------------------------------------------------------------------------


def test_canned_replies_are_saved_listed_and_refused_when_bad():
    olga = make_user("olga", operator=True)
    omar = make_user("omar", operator=True)
    url = reverse("handoff_console:api-replies")

    def post(user, body):
        client = Client()
        client.force_login(user)
        return client.post(url, json.dumps(body), content_type="application/json")

    def listed(user):
        client = Client()
        client.force_login(user)
        return [(r["shortcut"], r["shared"]) for r in client.get(url).json()["replies"]]

    assert post(olga, {"shortcut": "hi", "text": "Hello {customer_name}"}).status_code == 201
    assert post(olga, {"shortcut": "bye", "text": "Bye", "shared": True}).status_code == 201
    assert listed(olga) == [("bye", True), ("hi", False)]
    assert listed(omar) == [("bye", True)]  # another's own replies stay theirs
    # The same shortcut is free for another operator's own, taken among the shared.
    assert post(omar, {"shortcut": "hi", "text": "Hey"}).status_code == 201
    taken = post(omar, {"shortcut": "bye", "text": "x", "shared": True})
    assert taken.status_code == 400 and taken.json()["error"]["field"] == "shortcut"
    for body in (
        {"shortcut": "Bad Name", "text": "x"},
        {"shortcut": "", "text": "x"},
        {"shortcut": "x" * 41, "text": "x"},
        {"shortcut": "ok", "text": "   "},
        {"shortcut": "ok", "text": 3},
        {"shortcut": "ok", "text": "x", "other": 1},
        {"shortcut": ["ok"], "text": "x"},
    ):
        response = post(olga, body)
        assert response.status_code == 400, body
        assert "error" in response.json()
    assert CannedReply.objects.count() == 3
    carol = make_user("carol")
    assert post(carol, {"shortcut": "x", "text": "x"}).status_code == 403
    assert Client().get(url).status_code in (401, 403)
