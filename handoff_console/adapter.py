"""What the console shows about a customer, as the host project decides.

Subclass :class:`ConsoleAdapter` and set ``HANDOFF_CONSOLE["ADAPTER"]`` to its path, e.g. to
name customers after the host's accounts, or to rank a paying customer's conversation
higher. Every method gets the session (with its ``owner`` loaded) and must be cheap: the
queue calls it for every row it shows.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.utils.formats import date_format
from django.utils.translation import gettext

from durable_sessions.models import DurableSession

PRIORITIES = ("urgent", "high", "normal", "low")


class ConsoleAdapter:
    """The host's hooks for the console's rows and context panel."""

    def customer_name(self, session: DurableSession, participant_name: str) -> str:
        """The name a row shows for the customer (``participant_name``: the session's).

        Anonymous visitors are all "Visitor": a few characters derived from their browser's
        id (not the id itself) tell them apart and stay the same across their sessions.
        """
        if session.owner_id is None and session.owner_visitor:
            tag = hashlib.sha256(session.owner_visitor.encode()).hexdigest()[:4]
            return f"{participant_name or 'Visitor'} {tag}"
        return participant_name

    def customer_profile(self, session: DurableSession) -> dict[str, Any]:
        """What the context panel shows about the customer: ``{"fields": [{"label",
        "value"}], "links": [{"label", "url"}]}`` (e.g. their plan, their orders).

        Values are shown as text; links open in a new tab, and only ``http(s)`` and
        site-relative URLs are kept.
        """
        owner = session.owner
        if owner is None:
            return {
                "fields": [
                    {"label": gettext("Account"), "value": gettext("not signed in (a visitor)")}
                ]
            }
        fields = [{"label": gettext("Account"), "value": owner.get_username()}]
        email = getattr(owner, "email", "")
        if email:
            fields.append({"label": gettext("Email"), "value": email})
        joined = getattr(owner, "date_joined", None)
        if joined is not None:
            fields.append(
                {
                    "label": gettext("Customer since"),
                    "value": date_format(joined, "SHORT_DATE_FORMAT"),
                }
            )
        return {"fields": fields, "links": []}

    def team_for(self, session: DurableSession) -> str:
        """The team (a :class:`~handoff_console.models.Team` slug) a queued session goes to
        when its handoff named none, e.g. by the customer's plan or language; "" for any
        operator. A team named by the handoff or a transfer comes first."""
        return ""

    def priority(self, session: DurableSession) -> str:
        """One of :data:`PRIORITIES`; by default ``metadata["priority"]``, else "normal"."""
        value = (session.metadata or {}).get("priority")
        return value if value in PRIORITIES else "normal"


_adapter: tuple[type, ConsoleAdapter] | None = None


def get_console_adapter() -> ConsoleAdapter:
    """The configured adapter (one instance per configured class)."""
    global _adapter
    from handoff_console.app_settings import console_settings

    cls = console_settings.ADAPTER
    if _adapter is None or _adapter[0] is not cls:
        _adapter = (cls, cls())
    return _adapter[1]
