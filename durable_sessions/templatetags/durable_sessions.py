"""Template tags for host pages: ``{% load durable_sessions %}``.

``{% durable_chat %}`` puts the chat widget on any page; ``{% client_storage %}`` tells a
page of one's own that loads ``client.js`` whether it may keep transcripts.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.middleware.csrf import get_token
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext, pgettext

from durable_sessions.adapter import visitor_id
from durable_sessions.app_settings import ds_settings
from durable_sessions.models import DurableSession, Status

register = template.Library()


@register.simple_tag
def client_storage() -> str:
    """``"on"`` when pages may let client.js keep transcripts in localStorage
    (``DURABLE_SESSIONS["CLIENT_STORAGE"]``), else ``"off"``."""
    return "on" if ds_settings.CLIENT_STORAGE else "off"


def resumable_session(request: Any) -> DurableSession | None:
    """The caller's most recently active open session, to resume in the widget."""
    user = getattr(request, "user", None)
    visitor = visitor_id(getattr(request, "session", None))
    if not visitor and (user is None or not user.is_authenticated):
        return None
    return (
        DurableSession.objects.owned_by(user, visitor)
        .filter(status=Status.OPEN)
        .order_by("-updated_at", "-id")
        .first()
    )


def javascript_catalog_url() -> str | None:
    """The URL of the widget's JavaScript catalog, or ``None`` where the host did not
    include ``durable_sessions.urls`` under its namespace (the widget then speaks English)."""
    try:
        return reverse("durable_sessions:javascript-catalog")
    except NoReverseMatch:
        return None


@register.inclusion_tag("durable_sessions/widget.html", takes_context=True)
def durable_chat(
    context: template.Context,
    title: str | None = None,
    label: str | None = None,
    greeting: str | None = None,
    session_title: str = "",
) -> dict[str, Any]:
    """A floating chat button and panel that resumes the visitor's or user's open
    conversation, or starts one on the first message.

    Texts left out are the widget's own, in the page's language; texts given are shown
    as given (a host translates its own).

    Needs ``request`` in the context (``django.template.context_processors.request``).
    The session is created over the REST API (``POST sessions/``), so the page works
    unchanged behind a cache; the CSRF cookie that POST needs is set here.
    """
    request = context.get("request")
    session = resumable_session(request) if request is not None else None
    if request is not None:
        get_token(request)  # sets the csrftoken cookie on this response
    return {
        "title": title if title is not None else gettext("Chat with us"),
        "label": label if label is not None else pgettext("widget launcher", "Chat"),
        "greeting": greeting
        if greeting is not None
        else gettext("Ask us anything: an assistant answers, and a person takes over when needed."),
        "catalog_url": javascript_catalog_url(),
        "max_chars": ds_settings.MAX_MESSAGE_CHARS,
        "config": {
            "session_id": str(session.id) if session is not None else None,
            "sessions_url": reverse("durable_sessions:session-create"),
            "client_url": static("durable_sessions/client.js"),
            "client_storage": ds_settings.CLIENT_STORAGE,
            "session_title": session_title,
        },
    }
