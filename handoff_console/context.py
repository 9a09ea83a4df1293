"""The context panel of a session: who the customer is (from the host's adapter) and their
previous conversations."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.urls import reverse

from durable_sessions.adapter import AnyUser
from durable_sessions.models import DurableSession
from handoff_console.adapter import get_console_adapter
from handoff_console.permissions import can_view

PREVIOUS_LIMIT = 10


def _safe_url(url: Any) -> str | None:
    """Only web links and paths of this site: never ``javascript:`` or ``data:``."""
    if not isinstance(url, str):
        return None
    parts = urlsplit(url.strip())
    if parts.scheme in ("http", "https") and parts.netloc:
        return url.strip()
    if not parts.scheme and not parts.netloc and url.startswith("/"):
        return url.strip()
    return None


def customer_profile(session: DurableSession) -> dict[str, list[dict[str, str]]]:
    """The adapter's profile, with every value as text and every unsafe link dropped."""
    profile = get_console_adapter().customer_profile(session) or {}
    fields = [
        {"label": str(f.get("label", "")), "value": str(f.get("value", ""))}
        for f in profile.get("fields", [])
        if isinstance(f, dict)
    ]
    links = []
    for link in profile.get("links", []):
        url = _safe_url(link.get("url")) if isinstance(link, dict) else None
        if url:
            links.append({"label": str(link.get("label") or url), "url": url})
    return {"fields": fields, "links": links}


def previous_conversations(session: DurableSession, user: AnyUser) -> list[dict[str, Any]]:
    """The same customer's other conversations, newest first, that ``user`` may open."""
    if session.owner_id is not None:
        same = DurableSession.objects.filter(owner_id=session.owner_id)
    elif session.owner_visitor:
        same = DurableSession.objects.filter(
            owner__isnull=True, owner_visitor=session.owner_visitor
        )
    else:
        return []
    others = same.exclude(pk=session.pk).order_by("-created_at")[:PREVIOUS_LIMIT]
    return [
        {
            "title": other.title or "Conversation",
            "status": other.status,
            "created_at": other.created_at,
            "url": reverse("handoff_console:session", args=[other.pk]),
        }
        for other in others
        if can_view(other, user)
    ]
