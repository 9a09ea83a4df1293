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


async def test_the_wrapped_app_gets_what_it_is_sent_and_its_result_and_errors_come_back():
    """The middleware keeps no coroutine of its own while the app runs: what the app
    awaits, its result, its errors and a cancellation pass straight through."""
    import asyncio

    events = []
    waiting = asyncio.Event()

    async def inner(scope, receive, send):
        events.append(await receive())
        if scope["path"] == "/fail/":
            raise KeyError("inner")
        waiting.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        return "done"

    async def receive():
        await asyncio.sleep(0)
        return {"type": "websocket.connect"}

    def scope(path):
        return {"type": "websocket", "path": path, "headers": []}

    with pytest.raises(KeyError, match="inner"):
        await SessionAuthMiddleware(inner)(scope("/fail/"), receive, None)
    task = asyncio.ensure_future(SessionAuthMiddleware(inner)(scope("/wait/"), receive, None))
    await asyncio.wait_for(waiting.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == [{"type": "websocket.connect"}] * 2 + ["cancelled"]

    async def quick(scope, receive, send):
        return scope["user"].is_authenticated

    assert await SessionAuthMiddleware(quick)(scope("/"), receive, None) is False


async def test_an_open_connection_keeps_no_decoded_session_data():
    """Once open, the connection holds its Django session's key, not its decoded data;
    a later read (the access re-check) loads it again."""
    session, store = await db(anonymous_session)("v-forget")
    seen = {}

    async def recording(scope, receive, send):
        seen["session"] = scope["session"]
        return await ws_app(scope, receive, send)

    headers = [(b"cookie", f"sessionid={store.session_key}".encode())]
    comm = WebsocketCommunicator(
        SessionAuthMiddleware(recording), f"/ws/sessions/{session.id}/", headers=headers
    )
    connected, _ = await comm.connect()
    assert connected
    snapshot = await comm.receive_json_from(timeout=5)
    assert snapshot["you"]["access"] == "owner"
    while (await comm.receive_json_from(timeout=5))["type"] != "live":
        pass  # the replay
    kept = seen["session"]
    assert "_session_cache" not in kept.__dict__
    assert kept.session_key == store.session_key
    assert await db(kept.get)(VISITOR_KEY) == "v-forget"  # loaded again when read
    await comm.disconnect()


async def test_anonymous_connections_share_one_anonymous_user():
    users = []

    async def inner(scope, receive, send):
        users.append(scope["user"])

    for cookie in (None, "sessionid=unknown-key"):
        headers = [(b"cookie", cookie.encode())] if cookie else []
        await SessionAuthMiddleware(inner)({"type": "websocket", "headers": headers}, None, None)
    assert not users[0].is_authenticated and users[0] is users[1]
