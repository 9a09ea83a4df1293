"""Demo pages: start a conversation, chat in it, and continue it on another device."""

from __future__ import annotations

import uuid

from django.contrib.auth.views import redirect_to_login
from django.core import signing
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from durable_sessions import service
from durable_sessions.adapter import VISITOR_KEY, Access, get_adapter, visitor_id
from durable_sessions.models import DurableSession

# A "continue on another device" link is a bearer credential: keep it short-lived.
HANDOVER_SALT = "project.views.continue-on-another-device"
HANDOVER_MAX_AGE = 10 * 60


def _my_sessions(request: HttpRequest) -> QuerySet[DurableSession]:
    return DurableSession.objects.owned_by(request.user, visitor_id(request.session))[:20]


def _owned_session(request: HttpRequest, session_id: uuid.UUID) -> DurableSession:
    """The session if the caller is its customer; a 404 for anybody else (operators too)."""
    session = DurableSession.objects.filter(pk=session_id).first()
    if session is None or (
        get_adapter().access(session, request.user, visitor_id(request.session)) is not Access.OWNER
    ):
        raise Http404("No such conversation")
    return session


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html", {"sessions": _my_sessions(request)})


@require_POST
def new_chat(request: HttpRequest) -> HttpResponse:
    user = request.user if request.user.is_authenticated else None
    visitor = "" if user else visitor_id(request.session, create=True)
    session = service.create_session(owner=user, visitor=visitor or "", title="Demo chat")
    return redirect("chat", session_id=session.id)


def chat(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """The customer's chat page; operators use the console instead."""
    session = _owned_session(request, session_id)
    return render(request, "chat.html", {"session": session})


@require_POST
def handover_link(request: HttpRequest, session_id: uuid.UUID) -> JsonResponse:
    """A signed, short-lived link that opens this conversation on another device."""
    session = _owned_session(request, session_id)
    token = signing.dumps(str(session.id), salt=HANDOVER_SALT)
    url = request.build_absolute_uri(reverse("chat-continue", args=[token]))
    return JsonResponse(
        {"url": url, "expires_in": HANDOVER_MAX_AGE, "needs_login": session.owner_id is not None}
    )


def _handover_refused(request: HttpRequest, problem: str, status: int) -> HttpResponse:
    return render(request, "continue.html", {"problem": problem}, status=status)


@require_http_methods(["GET", "POST"])
def continue_chat(request: HttpRequest, token: str) -> HttpResponse:
    """Open a conversation from a link made on another device.

    GET asks for confirmation; the POST (CSRF-protected, so that no other site can attach
    a conversation to this browser) gives this browser the conversation's visitor id. A
    conversation that belongs to an account is opened by logging in to that account.
    """
    try:
        session_id = signing.loads(token, salt=HANDOVER_SALT, max_age=HANDOVER_MAX_AGE)
    except signing.SignatureExpired:
        return _handover_refused(request, "expired", 410)
    except signing.BadSignature:
        return _handover_refused(request, "invalid", 400)
    session = DurableSession.objects.filter(pk=session_id).first()
    if session is None:
        return _handover_refused(request, "invalid", 404)
    access = get_adapter().access(session, request.user, visitor_id(request.session))
    if access is Access.OWNER:
        return redirect("chat", session_id=session.id)
    if session.owner_id is not None:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        return _handover_refused(request, "other-account", 403)
    if request.method == "POST":
        request.session[VISITOR_KEY] = session.owner_visitor
        # A new session key: whoever knew the old cookie gains nothing from this grant.
        request.session.cycle_key()
        return redirect("chat", session_id=session.id)
    # A browser holds one visitor id: adopting another hides its own anonymous conversations.
    current = visitor_id(request.session)
    replaces = bool(current) and (
        DurableSession.objects.filter(owner__isnull=True, owner_visitor=current).exists()
    )
    return render(request, "continue.html", {"session": session, "replaces": replaces})
