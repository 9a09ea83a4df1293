"""Small builders shared by the tests."""

from __future__ import annotations

import time
from typing import Any

from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Permission
from django.contrib.sessions.backends.db import SessionStore

from durable_sessions import service
from durable_sessions.adapter import VISITOR_KEY
from durable_sessions.delivery.publish import make_async
from durable_sessions.models import DurableSession, Event, Message
from durable_sessions.routing import websocket_urlpatterns

ws_app = URLRouter(websocket_urlpatterns)


def make_user(username: str, *, operator: bool = False, staff: bool = False):
    user = get_user_model().objects.create_user(username=username, password="pw-" + username)
    if staff:
        user.is_staff = True
        user.save()
    if operator:
        # Customers see an operator's chosen name (their full name), never their login:
        # these operators chose their username as it.
        user.first_name = username
        user.save()
        user.user_permissions.add(
            Permission.objects.get(
                content_type__app_label="durable_sessions", codename="operate_sessions"
            )
        )
        user = get_user_model().objects.get(pk=user.pk)  # drop the permission cache
    return user


def visitor_session(visitor: str = "visitor-1") -> SessionStore:
    store = SessionStore()
    store[VISITOR_KEY] = visitor
    store.save()
    return store


def anonymous_session(visitor: str = "visitor-1") -> tuple[DurableSession, SessionStore]:
    store = visitor_session(visitor)
    return service.create_session(visitor=visitor, title="test"), store


def seqs(session: DurableSession) -> list[int]:
    return list(Event.objects.filter(session=session).order_by("seq").values_list("seq", flat=True))


def communicator(
    session_id: Any,
    *,
    user: Any = None,
    store: SessionStore | None = None,
    after_seq: int = 0,
    batch: bool = False,
) -> WebsocketCommunicator:
    query = f"after_seq={after_seq}" + ("&batch=1" if batch else "")
    comm = WebsocketCommunicator(ws_app, f"/ws/sessions/{session_id}/?{query}")
    comm.scope["user"] = user or AnonymousUser()
    comm.scope["session"] = store
    return comm


async def open_ws(
    session_id: Any, **kwargs: Any
) -> tuple[WebsocketCommunicator, list[dict[str, Any]]]:
    """Connect and read up to the ``live`` frame; returns the frames before it too."""
    comm = communicator(session_id, **kwargs)
    connected, _ = await comm.connect()
    assert connected
    frames = []
    while True:
        frame = await comm.receive_json_from(timeout=5)
        frames.append(frame)
        if frame["type"] == "live":
            return comm, frames


EPHEMERAL = ("agent.status", "presence")


async def recv(comm: WebsocketCommunicator, wait: float = 5) -> dict[str, Any]:
    """The next frame that is not ephemeral state (agent status, presence)."""
    while True:
        frame = await comm.receive_json_from(timeout=wait)
        if frame.get("type") not in EPHEMERAL:
            return frame


async def nothing_more(comm: WebsocketCommunicator, wait: float = 0.3) -> bool:
    """True when no frame other than ephemeral state arrives within ``wait`` seconds."""
    # receive_nothing never cancels the application, unlike a timed-out receive.
    deadline = time.monotonic() + wait
    while True:
        remaining = deadline - time.monotonic()
        if await comm.receive_nothing(timeout=max(remaining, 0.01)):
            return True
        if (await comm.receive_json_from()).get("type") not in EPHEMERAL:
            return False


async def stream_text(reply: Message, text: str) -> int:
    """Append ``text`` to a streaming reply through the runtime's group commit."""
    return await service.delta_writer.append(reply.session_id, reply.pk, text)


async def close(session: DurableSession) -> bool:
    """Close ``session`` from async code, with its wake-ups sent from the event loop."""
    return await make_async(service.close_session)(session.id)
