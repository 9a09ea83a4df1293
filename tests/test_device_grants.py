"""A "continue on another device" link opens one conversation on one more browser, once.

The link used to hand the opening browser the visitor's whole identity: it opened the
visitor's other conversations, any number of browsers could adopt it, it kept working after
the conversation closed, the access outlived the link (the holder read conversations the
visitor started later), and an attacker's link made a victim's browser drop its own
conversations and start new ones the attacker could read. Each test below is one of those
findings, through the demo's pages and the REST API, plus the websocket and the API rules.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from channels.db import database_sync_to_async
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from durable_sessions import service
from durable_sessions.adapter import VISITOR_KEY, Access, get_adapter
from durable_sessions.models import DeviceGrant, DurableSession
from tests.factories import communicator, make_user

JSON = "application/json"


@pytest.fixture(autouse=True)
def _demo_link_page(ds_config: Any) -> None:
    """The demo's page that opens links (its settings say so; the tests' base keys do not)."""
    ds_config(DEVICE_LINK_URL="/chat/continue/{token}/")


class Browser:
    """A CSRF-checking test client standing for one browser, with its own cookies."""

    def __init__(self, visitor: str | None = None) -> None:
        self.client = Client(enforce_csrf_checks=True)
        if visitor:
            store = SessionStore()
            store[VISITOR_KEY] = visitor
            store.save()
            self.client.cookies["sessionid"] = store.session_key
        self.client.get("/")  # the CSRF cookie

    @property
    def csrf(self) -> str:
        return self.client.cookies["csrftoken"].value

    @property
    def visitor(self) -> str | None:
        key = self.client.cookies.get("sessionid")
        return SessionStore(key.value).get(VISITOR_KEY) if key else None

    def post(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self.client.post(path, data, HTTP_X_CSRFTOKEN=self.csrf, **kwargs)

    def start_chat(self) -> DurableSession:
        answer = self.post("/chat/new/")
        assert answer.status_code == 302, answer.content
        return DurableSession.objects.get(pk=answer["Location"].split("/")[2])

    def make_link(self, session: DurableSession) -> str:
        """The path of a new device link of ``session``, made through the API."""
        answer = self.post(devices_url(session), content_type=JSON)
        assert answer.status_code == 201, answer.content
        return urlsplit(answer.json()["url"]).path

    def open_link(self, path: str) -> Any:
        """Confirm on the link's page, as a person does; the answer to the POST."""
        page = self.client.get(path)
        if page.status_code != 200:
            return page
        assert b"Continue here" in page.content
        return self.post(path)

    def reads(self, session: DurableSession) -> bool:
        """Whether this browser reads ``session``: the chat page and the API agree."""
        page = self.client.get(f"/chat/{session.id}/").status_code
        api = self.client.get(f"/ds/sessions/{session.id}/messages/").status_code
        assert (page == 200) == (api == 200), (page, api)
        return api == 200


def devices_url(session: DurableSession) -> str:
    return reverse("durable_sessions:session-devices", args=[session.id])


def expire_links() -> None:
    """Move every link's expiry into the past (as if its minutes had passed)."""
    DeviceGrant.objects.update(expires_at=timezone.now() - timedelta(seconds=1))


# --- the five findings -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_link_opens_its_one_conversation_and_not_the_visitors_others():
    laptop = Browser()
    first, second = laptop.start_chat(), laptop.start_chat()
    link = laptop.make_link(first)

    phone = Browser("phone-own-id")
    assert phone.open_link(link)["Location"] == f"/chat/{first.id}/"

    assert phone.reads(first)
    assert not phone.reads(second)
    assert phone.visitor == "phone-own-id"  # its own identity, not the laptop's
    listed = phone.client.get("/ds/sessions/").json()["results"]
    assert [s["id"] for s in listed] == []  # a granted session is not one of its own


@pytest.mark.django_db
def test_a_link_opens_on_one_browser_only():
    laptop = Browser()
    session = laptop.start_chat()
    link = laptop.make_link(session)
    phone, tablet = Browser(), Browser()

    assert phone.open_link(link).status_code == 302
    refused = tablet.open_link(link)
    assert refused.status_code == 410 and b"already been opened" in refused.content
    assert refused.status_code == tablet.post(link).status_code  # a POST alone neither
    assert not tablet.reads(session)
    assert phone.reads(session)
    assert phone.open_link(link).status_code == 302  # the same browser again: harmless


@pytest.mark.django_db
def test_a_link_stops_working_when_the_conversation_closes():
    laptop = Browser()
    session = laptop.start_chat()
    used, unused = laptop.make_link(session), laptop.make_link(session)
    phone = Browser()
    phone.open_link(used)

    service.close_session(session.id)

    refused = Browser().open_link(unused)
    assert refused.status_code == 410 and b"closed" in refused.content
    assert not phone.reads(session)  # the grant ends with the conversation
    assert laptop.reads(session)  # the owner still reads it


@pytest.mark.django_db
def test_access_never_outlives_the_link_to_other_conversations():
    laptop = Browser()
    session = laptop.start_chat()
    opened, unopened = laptop.make_link(session), laptop.make_link(session)
    phone = Browser()
    phone.open_link(opened)

    expire_links()
    later = laptop.start_chat()  # a conversation the visitor starts after the expiry

    assert not phone.reads(later)
    assert Browser().open_link(unopened).status_code == 410
    assert phone.reads(session)  # what was granted in time stays, until revoked or closed


@pytest.mark.django_db
def test_an_attackers_link_takes_nothing_from_the_victim():
    attacker = Browser()
    bait = attacker.start_chat()
    link = attacker.make_link(bait)
    victim = Browser()
    own = victim.start_chat()
    victim_id = victim.visitor

    assert victim.open_link(link).status_code == 302

    assert victim.visitor == victim_id  # not replaced by the attacker's identity
    assert victim.reads(own)  # the victim keeps their earlier conversation
    following = victim.start_chat()
    assert following.owner_visitor == victim_id
    assert not attacker.reads(following)  # and the attacker reads neither
    assert not attacker.reads(own)
    home = victim.client.get("/").content.decode()
    assert f"/chat/{own.id}/" in home and f"/chat/{following.id}/" in home


# --- revocation, the list, the page ------------------------------------------------------------


@pytest.mark.django_db
def test_the_customer_lists_and_revokes_links_and_the_device_loses_access_at_once():
    laptop = Browser()
    session = laptop.start_chat()
    link = laptop.make_link(session)
    phone = Browser()
    phone.open_link(link)
    pending = laptop.make_link(session)

    listed = laptop.client.get(devices_url(session)).json()["devices"]
    assert [d["state"] for d in listed] == ["pending", "active"]
    assert "token" not in listed[0]
    active = listed[1]["id"]

    revoked = laptop.client.delete(f"{devices_url(session)}{active}/", HTTP_X_CSRFTOKEN=laptop.csrf)
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    assert not phone.reads(session)
    assert phone.client.get(link).status_code == 410
    again = laptop.client.delete(f"{devices_url(session)}{active}/", HTTP_X_CSRFTOKEN=laptop.csrf)
    assert again.status_code == 200  # revoking twice is harmless
    pending_id = laptop.client.get(devices_url(session)).json()["devices"][0]["id"]
    laptop.client.delete(f"{devices_url(session)}{pending_id}/", HTTP_X_CSRFTOKEN=laptop.csrf)
    assert Browser().open_link(pending).status_code == 410


@pytest.mark.django_db
def test_the_page_says_exactly_what_the_link_grants():
    laptop = Browser()
    session = laptop.start_chat()
    page = " ".join(laptop.client.get(f"/chat/{session.id}/").content.decode().split())
    assert (
        "This link opens this one conversation on one more device, for 10 minutes; "
        "it works once." in page
    )
    assert "It does not open your other conversations." in page
    phone = Browser()
    phone.open_link(laptop.make_link(session))
    on_phone = phone.client.get(f"/chat/{session.id}/").content.decode()
    assert 'id="handover"' not in on_phone  # only the owner makes links
    assert "opened this conversation from a link" in on_phone


@pytest.mark.django_db
def test_only_the_conversations_own_customer_manages_its_links():
    laptop = Browser()
    session = laptop.start_chat()
    phone = Browser()
    phone.open_link(laptop.make_link(session))
    operator = Client()
    operator.force_login(make_user("olga", operator=True))

    assert phone.client.get(devices_url(session)).status_code == 403
    assert phone.post(devices_url(session), content_type=JSON).status_code == 403
    assert operator.get(devices_url(session)).status_code == 403
    assert Browser().client.get(devices_url(session)).status_code == 404
    other = laptop.start_chat()
    grant = DeviceGrant.objects.get()
    wrong = laptop.client.delete(f"{devices_url(other)}{grant.pk}/", HTTP_X_CSRFTOKEN=laptop.csrf)
    assert wrong.status_code == 404
    assert laptop.post(devices_url(session)).status_code == 415  # JSON only, as everywhere


@pytest.mark.django_db
def test_links_are_limited_per_conversation_and_not_made_for_account_conversations(ds_config):
    ds_config(DEVICE_GRANTS_PER_SESSION=2)
    laptop = Browser()
    session = laptop.start_chat()
    laptop.make_link(session)
    laptop.make_link(session)
    refused = laptop.post(devices_url(session), content_type=JSON)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict"
    expire_links()  # unopened links that expired no longer count
    laptop.make_link(session)

    carla = make_user("carla")
    account = Client(enforce_csrf_checks=True)
    account.force_login(carla)
    account.get("/")
    mine = service.create_session(owner=carla, title="mine")
    answer = account.post(
        devices_url(mine),
        content_type=JSON,
        HTTP_X_CSRFTOKEN=account.cookies["csrftoken"].value,
    )
    assert answer.status_code == 409
    page = account.get(f"/chat/{mine.id}/").content.decode()
    assert "log in there with the same account" in page and 'id="handover"' not in page


@pytest.mark.django_db
def test_links_are_made_by_csrf_checked_posts_and_opened_by_confirmed_posts():
    laptop = Browser()
    session = laptop.start_chat()
    assert laptop.client.post(devices_url(session), content_type=JSON).status_code == 403
    link = laptop.make_link(session)
    phone = Browser()
    assert phone.client.get(link).status_code == 200
    assert not phone.reads(session)  # a GET grants nothing
    assert phone.client.post(link).status_code == 403  # nor a POST without the CSRF token
    assert not phone.reads(session)
    assert laptop.open_link(link)["Location"] == f"/chat/{session.id}/"  # the owner's own
    assert DeviceGrant.objects.get().redeemed_at is None  # ... leaves it unused
    assert Browser().client.get("/chat/continue/not-a-token/").status_code == 404


@pytest.mark.django_db
def test_the_api_opens_a_link_for_a_browser_only():
    laptop = Browser()
    session = laptop.start_chat()
    token = laptop.post(devices_url(session), content_type=JSON).json()["token"]
    redeem = reverse("durable_sessions:device-redeem")

    user = make_user("tom")
    with_token = Client()
    key = Token.objects.create(user=user).key
    refused = with_token.post(
        redeem, {"token": token}, content_type=JSON, HTTP_AUTHORIZATION=f"Token {key}"
    )
    assert refused.status_code == 403

    phone = Browser()
    answer = phone.post(redeem, {"token": token}, content_type=JSON)
    assert answer.status_code == 200 and answer.json()["id"] == str(session.id)
    assert phone.reads(session)
    gone = Browser().post(redeem, {"token": token}, content_type=JSON)
    assert (gone.status_code, gone.json()["error"]["code"]) == (410, "link_unavailable")


@pytest.mark.django_db
def test_api_reads_of_conversations_are_never_cached():
    laptop = Browser()
    session = laptop.start_chat()
    for path in (
        "/ds/sessions/",
        f"/ds/sessions/{session.id}/",
        f"/ds/sessions/{session.id}/messages/",
        f"/ds/sessions/{session.id}/events/",
        devices_url(session),
    ):
        answer = laptop.client.get(path)
        assert answer.status_code == 200, path
        assert "no-store" in answer["Cache-Control"], path
    assert "no-store" in Browser().client.get(f"/ds/sessions/{session.id}/")["Cache-Control"]


# --- the adapter and the websocket ----------------------------------------------------------


@pytest.mark.django_db
def test_the_adapter_gives_a_grant_holder_the_customers_access_to_that_session_only():
    session = service.create_session(visitor="owner-id")
    other = service.create_session(visitor="owner-id")
    made = service.devices.create_device_grant(session.id)
    service.devices.redeem_device_grant(made.token, "phone-id")
    adapter = get_adapter()
    assert adapter.access(session, None, "phone-id") is Access.OWNER
    assert not adapter.owns(session, None, "phone-id")
    assert adapter.access(other, None, "phone-id") is None
    assert adapter.access(session, None, "someone-else") is None


@pytest.mark.django_db(transaction=True)
async def test_the_websocket_follows_the_grant_and_refuses_it_once_revoked():
    db = database_sync_to_async

    @db
    def granted() -> tuple[DurableSession, DeviceGrant, SessionStore]:
        session = service.create_session(visitor="owner-id")
        made = service.devices.create_device_grant(session.id)
        service.devices.redeem_device_grant(made.token, "phone-id")
        store = SessionStore()
        store[VISITOR_KEY] = "phone-id"
        store.save()
        return session, made.grant, store

    session, grant, store = await granted()
    comm = communicator(session.id, store=store)
    connected, _ = await comm.connect()
    assert connected
    frame = await comm.receive_json_from(timeout=5)
    assert frame["type"] == "snapshot" and frame["you"]["access"] == "owner"
    await comm.disconnect()

    await db(service.devices.revoke_device_grant)(session.id, grant.pk)
    comm = communicator(session.id, store=store)
    connected, _ = await comm.connect()
    assert connected  # accepted only to deliver the close code
    output = await comm.receive_output(timeout=5)
    assert (output["type"], output["code"]) == ("websocket.close", 4403)
