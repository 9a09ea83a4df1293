"""Demo pages: start a conversation, chat in it, and continue it on another device."""

from __future__ import annotations

import math
import uuid

from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from durable_sessions import service
from durable_sessions.adapter import Access, get_adapter, visitor_id
from durable_sessions.app_settings import ds_settings
from durable_sessions.models import DeviceGrant, DurableSession, Status
from durable_sessions.service.devices import LinkUnavailable

# What a refused link's page says, by the reason the service gives, and its status.
LINK_PROBLEMS = {"invalid": 404, "used": 410, "expired": 410, "revoked": 410, "closed": 410}


def _my_sessions(request: HttpRequest) -> list[DurableSession]:
    return list(DurableSession.objects.owned_by(request.user, visitor_id(request.session))[:20])


def _linked_sessions(request: HttpRequest) -> list[DurableSession]:
    """Open sessions this browser was given by a device link (not its own)."""
    visitor = visitor_id(request.session)
    if not visitor:
        return []
    grants = DeviceGrant.objects.redeemed_by(visitor).values("session_id")
    return list(DurableSession.objects.filter(pk__in=grants, status=Status.OPEN)[:20])


def _customer_session(request: HttpRequest, session_id: uuid.UUID) -> DurableSession:
    """The session if the caller is its customer (or holds a device link to it); a 404 for
    anybody else (operators too: they use the console)."""
    session = DurableSession.objects.filter(pk=session_id).first()
    if session is None or (
        get_adapter().access(session, request.user, visitor_id(request.session)) is not Access.OWNER
    ):
        raise Http404("No such conversation")
    return session


def home(request: HttpRequest) -> HttpResponse:
    context = {"sessions": _my_sessions(request), "linked": _linked_sessions(request)}
    return render(request, "home.html", context)


def shop(request: HttpRequest) -> HttpResponse:
    """A product page of the host's own, with the chat widget ({% durable_chat %})."""
    return render(request, "shop.html")


@require_POST
def new_chat(request: HttpRequest) -> HttpResponse:
    user = request.user if request.user.is_authenticated else None
    visitor = "" if user else visitor_id(request.session, create=True)
    session = service.create_session(owner=user, visitor=visitor or "", title="Demo chat")
    return redirect("chat", session_id=session.id)


def link_minutes() -> int:
    return max(1, math.ceil(ds_settings.DEVICE_LINK_TTL / 60))


def chat(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """The customer's chat page; operators use the console instead."""
    session = _customer_session(request, session_id)
    owns = get_adapter().owns(session, request.user, visitor_id(request.session))
    # Only the conversation's own customer makes and revokes device links.
    manages_devices = owns and session.owner_id is None
    page_config = {
        "session_id": str(session.id),
        "client_url": static("durable_sessions/client.js"),
        "client_storage": ds_settings.CLIENT_STORAGE,
        "csrf_token": get_token(request),
        "devices_url": (
            reverse("durable_sessions:session-devices", args=[session.id])
            if manages_devices
            else None
        ),
    }
    context = {
        "session": session,
        "manages_devices": manages_devices,
        "from_link": not owns,
        "link_minutes": link_minutes(),
        "page_config": page_config,
    }
    return render(request, "chat.html", context)


def _link_refused(request: HttpRequest, problem: str) -> HttpResponse:
    context = {"problem": problem, "link_minutes": link_minutes()}
    return render(request, "continue.html", context, status=LINK_PROBLEMS.get(problem, 410))


@require_http_methods(["GET", "POST"])
def continue_chat(request: HttpRequest, token: str) -> HttpResponse:
    """Open a conversation from a link made on another device.

    GET asks for confirmation; the POST (CSRF-protected, so that no other site can attach
    a conversation to this browser) binds the link to this browser's own visitor id. The
    browser gains that one conversation and keeps everything it had: its own
    conversations stay its own, and the link's owner learns nothing of them.
    """
    try:
        grant = service.devices.find_device_grant(token)
    except LinkUnavailable as refused:
        return _link_refused(request, refused.reason)
    session = grant.session
    adapter = get_adapter()
    visitor = visitor_id(request.session)
    if adapter.owns(session, request.user, visitor):
        # The customer opening their own link: nothing to grant, the link stays unused.
        return redirect("chat", session_id=session.id)
    if request.method == "POST":
        try:
            service.devices.redeem_device_grant(token, visitor_id(request.session, create=True))
        except LinkUnavailable as refused:
            return _link_refused(request, refused.reason)
        # A new session key: a cookie planted or seen before this grant gains nothing from it.
        request.session.cycle_key()
        return redirect("chat", session_id=session.id)
    if visitor and grant.redeemed_by_visitor == visitor and grant.state == "active":
        return redirect("chat", session_id=session.id)
    if session.status != Status.OPEN:
        return _link_refused(request, "closed")
    if grant.state != "pending":
        return _link_refused(request, "used" if grant.state == "active" else grant.state)
    return render(request, "continue.html", {"session": session, "grant": grant})


@require_http_methods(["GET", "POST"])
def aisdk_example(request: HttpRequest) -> HttpResponse:
    """The AI SDK example: a POST starts a conversation (the chat id is its session id)."""
    if request.method == "POST":
        user = request.user if request.user.is_authenticated else None
        visitor = "" if user else visitor_id(request.session, create=True)
        session = service.create_session(owner=user, visitor=visitor or "", title="AI SDK chat")
        return redirect("aisdk-example-chat", session_id=session.id)
    return render(request, "aisdk_example.html", {"session": None})


def aisdk_example_chat(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """A chat page built on the AI SDK's ``Chat`` with ``DurableChatTransport``."""
    session = _customer_session(request, session_id)
    page_config = {
        "session_id": str(session.id),
        "chat_url": static("durable_sessions/vendor/ai-chat.js"),
        "transport_url": static("durable_sessions/aisdk-transport.js"),
    }
    context = {"session": session, "page_config": page_config}
    return render(request, "aisdk_example.html", context)
