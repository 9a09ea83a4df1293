"""Access is re-read while a connection lives: revoked operators, logged-out or
deactivated customers are closed (4403) before they change anything."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, logout
from django.contrib.auth.models import Permission
from django.contrib.sessions.backends.db import SessionStore
from django.http import HttpRequest

from durable_sessions import consumers, service
from durable_sessions.models import Control, DurableSession, Message
from tests.factories import anonymous_session, make_user, open_ws

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async
EVERY_FRAME = 1e-9  # re-read access before every state-changing frame


async def closed_with(comm, wait: float = 5) -> int:
    """The close code, skipping the frames sent before it."""
    for _ in range(50):
        output = await comm.receive_output(timeout=wait)
        if output["type"] == "websocket.close":
            return output["code"]
    raise AssertionError("the connection was not closed")


def operate_permission() -> Permission:
    return Permission.objects.get(
        content_type__app_label="durable_sessions", codename="operate_sessions"
    )


def logged_in(user) -> SessionStore:
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    return store


def owned_session(username: str):
    user = make_user(username)
    return user, service.create_session(owner=user, title="mine"), logged_in(user)


async def test_an_operator_whose_permission_was_revoked_cannot_take_over(ds_config):
    ds_config(RECHECK_ACCESS_SECONDS=EVERY_FRAME)
    session, _ = await db(anonymous_session)()
    olga = await db(make_user)("olga", operator=True)
    console, _ = await open_ws(session.id, user=olga)

    def revoke_quietly() -> None:
        # A bulk delete sends no m2m_changed: only the re-check can notice.
        through = type(olga).user_permissions.through
        through.objects.filter(user_id=olga.pk, permission=operate_permission()).delete()

    await db(revoke_quietly)()
    await console.send_json_to(
        {"type": "message.send", "content": "I take this", "client_id": "o1"}
    )
    assert await closed_with(console) == consumers.CLOSE_FORBIDDEN
    session = await DurableSession.objects.aget(pk=session.pk)
    assert session.control == Control.AI and session.assigned_operator_id is None
    assert not await Message.objects.filter(session_id=session.pk, role="operator").aexists()


async def test_revoking_the_permission_closes_the_operators_socket_at_once():
    session, _ = await db(anonymous_session)()
    olga = await db(make_user)("olga", operator=True)
    console, _ = await open_ws(session.id, user=olga)
    await db(lambda: olga.user_permissions.remove(operate_permission()))()
    assert await closed_with(console) == consumers.CLOSE_FORBIDDEN


async def test_logging_out_closes_the_customers_sockets_of_that_browser():
    customer, session, store = await db(owned_session)("carla")
    phone_store = await db(logged_in)(customer)  # another device, still logged in
    laptop, _ = await open_ws(session.id, user=customer, store=store)
    phone, _ = await open_ws(session.id, user=customer, store=phone_store)

    def log_out() -> None:
        request = HttpRequest()
        request.session = SessionStore(session_key=store.session_key)
        request.user = customer
        logout(request)

    await db(log_out)()
    assert await closed_with(laptop) == consumers.CLOSE_FORBIDDEN
    await laptop.send_json_to({"type": "message.send", "content": "still here", "client_id": "x"})
    await phone.send_json_to({"type": "ping", "ref": 1})
    pong = await phone.receive_json_from(timeout=5)
    while pong["type"] != "pong":
        pong = await phone.receive_json_from(timeout=5)
    assert not await Message.objects.filter(session_id=session.pk).aexists()
    await phone.disconnect()


async def test_a_customer_whose_django_session_is_gone_cannot_post(ds_config):
    ds_config(RECHECK_ACCESS_SECONDS=EVERY_FRAME)
    customer, session, store = await db(owned_session)("carla")
    laptop, _ = await open_ws(session.id, user=customer, store=store)
    await db(SessionStore(session_key=store.session_key).delete)()  # logged out elsewhere
    await laptop.send_json_to({"type": "message.send", "content": "still here", "client_id": "x"})
    # Its login changed: the client reconnects, and the handshake decides.
    assert await closed_with(laptop) == consumers.CLOSE_REAUTH
    assert not await Message.objects.filter(session_id=session.pk).aexists()


async def test_a_deactivated_customer_is_closed():
    customer, session, store = await db(owned_session)("carla")
    laptop, _ = await open_ws(session.id, user=customer, store=store)

    def deactivate() -> None:
        customer.is_active = False
        customer.save()

    await db(deactivate)()
    assert await closed_with(laptop) == consumers.CLOSE_FORBIDDEN


async def test_a_changed_password_closes_the_socket_opened_before(ds_config):
    ds_config(RECHECK_ACCESS_SECONDS=EVERY_FRAME)
    customer, session, store = await db(owned_session)("carla")
    laptop, _ = await open_ws(session.id, user=customer, store=store)

    def change_password() -> None:
        customer.set_password("a new one")
        type(customer).objects.filter(pk=customer.pk).update(password=customer.password)

    await db(change_password)()
    await laptop.send_json_to({"type": "handoff.request", "ref": "h"})
    assert await closed_with(laptop) == consumers.CLOSE_FORBIDDEN
    session = await DurableSession.objects.aget(pk=session.pk)
    assert session.control == Control.AI


async def test_access_that_holds_is_not_reread_before_every_frame(ds_config, monkeypatch):
    ds_config(RECHECK_ACCESS_SECONDS=60)
    session, store = await db(anonymous_session)()
    comm, _ = await open_ws(session.id, store=store)
    reads = []
    monkeypatch.setattr(
        consumers.SessionConsumer, "_access_lost", lambda self: reads.append(1) or None
    )
    for i in range(3):
        await comm.send_json_to({"type": "message.send", "content": "hi", "client_id": f"c{i}"})
    for _ in range(3):
        while (await comm.receive_json_from(timeout=5))["type"] != "ack":
            pass
    assert reads == []
    await comm.disconnect()
