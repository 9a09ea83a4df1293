"""Assignment: teams, operators' availability, auto-assignment within a capacity, release
of an absent operator's claims, and transfer to a team - through the service, visible in
the log, the queue's rows, the admin and the API; bad input refused, nothing changed."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable_sessions import service
from durable_sessions.agents import Handoff
from durable_sessions.errors import Conflict, InvalidInput
from durable_sessions.models import Control, DurableSession, Event
from handoff_console import assignment, availability, queue
from handoff_console.adapter import ConsoleAdapter
from handoff_console.models import OperatorAvailability, Team
from tests.factories import make_user
from tests.hypothesis_profiles import examples
from tests.live import server_env

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


def queued(title: str = "help", *, team: str = "") -> DurableSession:
    session = service.create_session(visitor="visitor-a", title=title)
    customer = service.participant_for(session.id, "customer")
    service.post_message(session.id, author=customer, content=f"{title}, please")
    assert service.request_handoff(session.id, by=customer, reason="asked", team=team)
    return session


def online(*users) -> None:
    for user in users:
        availability.set_availability(user, "online")


def holder(session: DurableSession) -> int | None:
    session.refresh_from_db()
    return session.assigned_operator_id if session.control == Control.HUMAN else None


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post(client: Client, url: str, body) -> tuple[int, dict]:
    response = client.post(url, json.dumps(body), content_type="application/json")
    return response.status_code, response.json()


def test_least_busy_assignment_fills_operators_up_to_their_capacity(console_config):
    console_config(AUTO_ASSIGN="least_busy", CAPACITY=2)
    olga, piet = make_user("olga", operator=True), make_user("piet", operator=True)
    online(olga, piet)
    sessions = [queued(f"s{i}") for i in range(5)]

    result = assignment.run_pass()

    holders = [holder(s) for s in sessions]
    # Oldest first, alternating by load; the fifth waits: both are at capacity.
    assert sorted(h for h in holders[:4]) == sorted([olga.pk, olga.pk, piet.pk, piet.pk])
    assert holders[4] is None and len(result.assigned) == 4
    event = Event.objects.filter(session=sessions[0], type="control.changed").last()
    assert event.payload["reason"] == assignment.ASSIGNED_REASON
    assert event.payload["assigned_operator_id"] in (olga.pk, piet.pk)
    # Capacity bounds assignment only: an operator may still take more by hand.
    service.take_over(sessions[4].id, olga)
    assert availability.open_load()[olga.pk] == 3
    assert assignment.run_pass().assigned == []


def test_round_robin_gives_the_next_session_to_the_operator_longest_without_one(
    console_config,
):
    console_config(AUTO_ASSIGN="round_robin", CAPACITY=10)
    olga, piet = make_user("olga", operator=True), make_user("piet", operator=True)
    online(olga, piet)
    service.take_over(queued("held").id, olga)  # load does not matter to round robin
    sessions = [queued(f"s{i}") for i in range(4)]
    assignment.run_pass()
    holders = [holder(s) for s in sessions]
    assert holders[0::2] == [holders[0]] * 2 and holders[1::2] == [holders[1]] * 2
    assert {holders[0], holders[1]} == {olga.pk, piet.pk}


def test_away_offline_and_disconnected_operators_get_nothing(console_config):
    console_config(AUTO_ASSIGN="least_busy", OFFLINE_AFTER_SECONDS=20)
    away, off, gone = (make_user(n, operator=True) for n in ("away", "off", "gone"))
    availability.set_availability(away, "away")
    availability.set_availability(off, "offline")
    online(gone)
    # "Online" but no console page has beaten for longer than OFFLINE_AFTER_SECONDS.
    OperatorAvailability.objects.filter(user=gone).update(
        seen_at=timezone.now() - timedelta(seconds=60)
    )
    session = queued()
    assert assignment.run_pass().assigned == []
    assert holder(session) is None
    assert {o["name"]: o["availability"] for o in availability.operators()} == {
        "away": "away",
        "off": "offline",
        "gone": "offline",
    }
    availability.beat(gone)  # a console page connected again
    assert assignment.run_pass().assigned == [(str(session.id), gone.pk)]


def test_assignment_is_off_by_default(console_config):
    olga = make_user("olga", operator=True)
    online(olga)
    session = queued()
    assert assignment.run_pass().assigned == []
    assert holder(session) is None


def test_a_team_session_goes_only_to_the_team_and_the_row_names_the_team(console_config):
    console_config(AUTO_ASSIGN="least_busy")
    olga, piet = make_user("olga", operator=True), make_user("piet", operator=True)
    Team.objects.create(slug="billing", name="Billing").members.add(piet)
    availability.set_availability(olga, "online")
    billing = queued("invoice", team="billing")
    unknown = queued("other", team="no-such-team")  # unknown team: anyone may answer

    row = {r["id"]: r for r in queue.snapshot(olga)["sections"]["waiting"]}[str(billing.id)]
    assert row["team"] == "billing"
    assignment.run_pass()
    assert holder(billing) is None and holder(unknown) == olga.pk
    online(piet)
    assignment.run_pass()
    assert holder(billing) == piet.pk


def test_the_adapter_routes_a_handoff_that_named_no_team(console_config):
    class ByPlan(ConsoleAdapter):
        def team_for(self, session):
            return (session.metadata or {}).get("plan", "")

    console_config(AUTO_ASSIGN="least_busy", ADAPTER=f"{__name__}.ByPlanAdapter")
    globals()["ByPlanAdapter"] = ByPlan
    olga, piet = make_user("olga", operator=True), make_user("piet", operator=True)
    Team.objects.create(slug="enterprise", name="Enterprise").members.add(piet)
    online(olga)
    session = service.create_session(visitor="v", title="big", metadata={"plan": "enterprise"})
    service.request_handoff(session.id, by=None, reason="x")
    assert assignment.run_pass().assigned == []
    online(piet)
    assert assignment.run_pass().assigned == [(str(session.id), piet.pk)]


def test_an_agents_handoff_carries_its_team_and_a_bad_team_is_refused():
    assert Handoff(reason="r", team="billing").team == "billing"
    session = queued("a", team="billing")
    payload = Event.objects.filter(session=session, type="control.changed").last().payload
    assert payload["team"] == "billing" and payload["control"] == "queued"
    other = service.create_session(visitor="v", title="b")
    for bad in ("Billing", "a b", "x" * 51, 7, "<b>"):
        with pytest.raises(InvalidInput) as info:
            service.request_handoff(other.id, by=None, reason="r", team=bad)
        assert info.value.field == "team"
    other.refresh_from_db()
    assert other.control == Control.AI


def test_an_absent_operators_claims_return_to_the_queue_for_their_team(console_config):
    console_config(OFFLINE_AFTER_SECONDS=20, RELEASE_AFTER_SECONDS=60)
    olga, piet = make_user("olga", operator=True), make_user("piet", operator=True)
    online(olga, piet)
    billing = queued("invoice", team="billing")
    service.take_over(billing.id, olga)
    kept = queued("kept")
    service.take_over(kept.id, piet)
    # An operator who never opened the console (e.g. works through the API) is not released.
    omar = make_user("omar", operator=True)
    by_api = queued("api")
    service.take_over(by_api.id, omar)
    OperatorAvailability.objects.filter(user=olga).update(
        seen_at=timezone.now() - timedelta(seconds=70)
    )
    assert assignment.run_pass().released == []  # offline for 50 s: not yet
    OperatorAvailability.objects.filter(user=olga).update(
        seen_at=timezone.now() - timedelta(seconds=90)
    )
    assert assignment.run_pass().released == [str(billing.id)]
    billing.refresh_from_db()
    assert billing.control == Control.QUEUED and holder(kept) == piet.pk
    assert holder(by_api) == omar.pk
    event = Event.objects.filter(session=billing, type="control.changed").last()
    assert event.payload["team"] == "billing"
    assert event.payload["reason"] == "the operator went offline"
    # Released once: a second pass changes nothing, and neither does a stale release.
    assert assignment.run_pass().released == []
    assert service.release_claim(kept.id, olga.pk) is False


def test_transfer_to_a_team_through_the_api_requeues_it_with_the_note():
    olga, piet = make_user("olga", operator=True), make_user("piet", operator=True)
    Team.objects.create(slug="billing", name="Billing")
    session = queued()
    service.take_over(session.id, olga)
    url = reverse("handoff_console:api-transfer-team", args=[session.id])

    # Refusals change nothing.
    for who, body, expected in (
        (olga, {"team": "nope"}, (400, "team")),
        (olga, {"team": 5}, (400, "team")),
        (olga, {}, (400, "team")),
        (olga, {"team": "billing", "extra": 1}, (400, "extra")),
        (piet, {"team": "billing"}, (409, None)),
    ):
        status, data = post(client_for(who), url, body)
        assert (status, data["error"].get("field")) == expected, (body, data)
    assert holder(session) == olga.pk

    status, data = post(client_for(olga), url, {"team": "billing", "reason": "VAT question"})
    assert status == 200 and data["session"]["control"] == "queued"
    payload = Event.objects.filter(session=session, type="control.changed").last().payload
    assert (payload["team"], payload["reason"]) == ("billing", "VAT question")
    with pytest.raises(Conflict):  # no longer theirs
        service.transfer_to_team(session.id, olga, "billing")


def test_availability_and_operators_endpoints():
    olga = make_user("olga", operator=True)
    Team.objects.create(slug="billing", name="Billing").members.add(olga)
    client = client_for(olga)
    url = reverse("handoff_console:api-availability")
    assert client.get(url).json() == {"availability": "offline"}  # no page open yet
    for bad in ("busy", "", None, 1, ["online"]):
        status, data = post(client, url, {"availability": bad})
        assert (status, data["error"]["field"]) == (400, "availability"), bad
    assert post(client, url, {"availability": "away"}) == (200, {"availability": "away"})
    listing = client.get(reverse("handoff_console:api-operators")).json()
    assert listing == {
        "operators": [
            {"id": olga.pk, "name": "olga", "availability": "away", "open": 0, "teams": ["billing"]}
        ],
        "teams": [{"slug": "billing", "name": "Billing"}],
    }
    customer = client_for(make_user("carla"))
    for path in ("api-availability", "api-operators"):
        assert customer.get(reverse(f"handoff_console:{path}")).status_code == 403
    assert post(customer, url, {"availability": "online"})[0] == 403


@pytest.fixture
def olga():
    return make_user("olga", operator=True)


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=st.one_of(st.text(max_size=60), st.integers(), st.none(), st.booleans()))
def test_fuzzed_availability_and_team_values_are_refused_or_stored_never_crash(olga, value):
    OperatorAvailability.objects.filter(user=olga).delete()
    try:
        availability.set_availability(olga, value)
    except InvalidInput as error:
        assert error.field == "availability"
        assert not OperatorAvailability.objects.filter(user=olga).exists()
    else:
        assert value in ("online", "away", "offline")
    session = service.create_session(visitor="v", title="t")
    try:
        service.request_handoff(session.id, by=None, reason="r", team=value)
    except InvalidInput as error:
        assert error.field == "team"
        session.refresh_from_db()
        assert session.control == Control.AI


def test_console_assign_command_runs_one_pass(console_config, capsys):
    console_config(AUTO_ASSIGN="least_busy")
    olga = make_user("olga", operator=True)
    online(olga)
    session = queued()
    call_command("console_assign")
    assert "assigned 1, released 0" in capsys.readouterr().out
    assert holder(session) == olga.pk


def test_admin_lists_teams_and_availability():
    admin_user = make_user("root", staff=True)
    admin_user.is_superuser = True
    admin_user.save()
    Team.objects.create(slug="billing", name="Billing")
    availability.set_availability(admin_user, "away")
    client = client_for(admin_user)
    teams = client.get(reverse("admin:handoff_console_team_changelist"))
    assert teams.status_code == 200 and b"Billing" in teams.content
    records = client.get(reverse("admin:handoff_console_operatoravailability_changelist"))
    assert records.status_code == 200 and b"away" in records.content


@pytest.mark.django_db(transaction=True)
def test_passes_in_several_processes_at_once_never_exceed_the_capacity(postgres):
    """Four ``console_assign`` processes on PostgreSQL at once: each operator gets exactly
    their capacity, each session at most one take-over."""
    operators = [make_user(f"op{i}", operator=True) for i in range(3)]
    online(*operators)
    sessions = [queued(f"s{i}") for i in range(10)]
    env = server_env()
    env["HANDOFF_CONSOLE_JSON"] = json.dumps({"AUTO_ASSIGN": "least_busy", "CAPACITY": 2})
    command = [sys.executable, str(ROOT / "manage.py"), "console_assign"]
    processes = [
        subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=60)[0] for process in processes]
    assert all(process.returncode == 0 for process in processes), outputs
    assert sum(int(out.split()[1].rstrip(",")) for out in outputs) == 6, outputs
    assert availability.open_load() == {op.pk: 2 for op in operators}
    held = DurableSession.objects.filter(pk__in=[s.pk for s in sessions], control=Control.HUMAN)
    assert held.count() == 6
    for session in held:
        taken = Event.objects.filter(
            session=session, type="control.changed", payload__control="human"
        )
        assert taken.count() == 1
