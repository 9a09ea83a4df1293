"""SessionAuthMiddleware: the session cookie's Django session and user, in one step."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from durable_sessions.adapter import VISITOR_KEY
from durable_sessions.middleware import SessionAuthMiddleware
from tests.factories import anonymous_session, make_user, ws_app

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async
app = SessionAuthMiddleware(ws_app)


def logged_in(user) -> SessionStore:
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    return store


def connect(session_id, cookie: str | None) -> WebsocketCommunicator:
    headers = [(b"cookie", cookie.encode())] if cookie else []
    return WebsocketCommunicator(app, f"/ws/sessions/{session_id}/", headers=headers)


async def test_the_visitor_of_the_cookie_owns_an_anonymous_session():
    session, store = await db(anonymous_session)("v-cookie")
    comm = connect(session.id, f"other=1; sessionid={store.session_key}")
    connected, _ = await comm.connect()
    assert connected
    snapshot = await comm.receive_json_from(timeout=5)
    assert snapshot["type"] == "snapshot" and snapshot["you"]["access"] == "owner"
    await comm.disconnect()


async def test_a_logged_in_operator_is_recognised():
    session, _ = await db(anonymous_session)("v-op")
    olga = await db(make_user)("olga", operator=True)
    store = await db(logged_in)(olga)
    comm = connect(session.id, f"sessionid={store.session_key}")
    connected, _ = await comm.connect()
    assert connected
    snapshot = await comm.receive_json_from(timeout=5)
    assert snapshot["you"]["access"] == "operator"
    await comm.disconnect()


@pytest.mark.parametrize("cookie", [None, "sessionid=unknown-key", "sessionid="])
async def test_no_valid_cookie_means_an_anonymous_stranger(cookie):
    session, _ = await db(anonymous_session)("v-stranger")
    comm = connect(session.id, cookie)
    connected, _ = await comm.connect()
    assert connected
    assert (await comm.receive_output(timeout=5))["code"] == 4403
    await comm.disconnect()


async def test_the_scope_gets_session_and_user():
    seen = {}

    async def inner(scope, receive, send):
        seen.update(scope)

    olga = await db(make_user)("olga2")
    store = await db(logged_in)(olga)
    visitor = SessionStore()
    visitor[VISITOR_KEY] = "v-scope"
    await db(visitor.save)()
    for cookie, user in ((store.session_key, olga), (visitor.session_key, None)):
        scope = {"type": "websocket", "headers": [(b"cookie", f"sessionid={cookie}".encode())]}
        await SessionAuthMiddleware(inner)(scope, None, None)
        assert seen["session"].session_key == cookie
        if user is None:
            assert not seen["user"].is_authenticated
            assert await db(seen["session"].get)(VISITOR_KEY) == "v-scope"
        else:
            assert seen["user"].pk == user.pk
        assert "session" not in scope  # the caller's scope is left as it was


async def test_http_scopes_are_refused():
    with pytest.raises(ValueError, match="websocket"):
        await SessionAuthMiddleware(ws_app)({"type": "http", "headers": []}, None, None)
