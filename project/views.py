"""Demo pages: start a conversation and chat in it."""

from __future__ import annotations

import uuid

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from durable_sessions import service
from durable_sessions.adapter import get_adapter, visitor_id
from durable_sessions.models import DurableSession


def _my_sessions(request: HttpRequest):
    if request.user.is_authenticated:
        return DurableSession.objects.filter(owner=request.user)[:20]
    visitor = visitor_id(request.session)
    if visitor:
        return DurableSession.objects.filter(owner__isnull=True, owner_visitor=visitor)[:20]
    return DurableSession.objects.none()


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html", {"sessions": _my_sessions(request)})


@require_POST
def new_chat(request: HttpRequest) -> HttpResponse:
    user = request.user if request.user.is_authenticated else None
    visitor = "" if user else visitor_id(request.session, create=True)
    session = service.create_session(owner=user, visitor=visitor or "", title="Demo chat")
    return redirect("chat", session_id=session.id)


def chat(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    session = DurableSession.objects.filter(pk=session_id).first()
    if (
        session is None
        or get_adapter().access(session, request.user, visitor_id(request.session)) is None
    ):
        raise Http404("No such conversation")
    return render(request, "chat.html", {"session": session})
