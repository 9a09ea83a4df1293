"""The queue's search and filters, read from the page's URL.

Search (``q``) runs on the server, over the sessions' titles, their participants' names
and their messages; the filters (``state``, ``assignee``, ``team``, ``waited``) are applied by the
page to the live rows, so that they keep holding while the queue changes. A value that
is not understood is dropped with a note on the page, never a server error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q
from django.http import QueryDict
from django.utils.translation import gettext, ngettext

from durable_sessions.errors import InvalidInput
from durable_sessions.models import DurableSession, Message, Participant
from durable_sessions.service.validation import clean_team
from handoff_console.queue import SECTIONS

MAX_QUERY_CHARS = 200
MAX_MATCHES = 500
ASSIGNEES = ("", "me", "none")
MAX_WAITED_MINUTES = 7 * 24 * 60


@dataclass
class QueueFilters:
    """What the operator asked the queue page to show."""

    q: str = ""
    state: str = ""
    assignee: str = ""
    team: str = ""
    waited: int = 0
    problems: list[str] = field(default_factory=list)

    @classmethod
    def from_query(cls, params: QueryDict) -> QueueFilters:
        found = cls()
        q = params.get("q", "").strip()
        if len(q) > MAX_QUERY_CHARS:
            found.problems.append(
                ngettext(
                    "The search is limited to %(count)d character.",
                    "The search is limited to %(count)d characters.",
                    MAX_QUERY_CHARS,
                )
                % {"count": MAX_QUERY_CHARS}
            )
            q = q[:MAX_QUERY_CHARS]
        found.q = q.replace("\x00", "")
        state = params.get("state", "")
        if state in ("", *SECTIONS):
            found.state = state
        else:
            found.problems.append(gettext("Unknown state filter ignored."))
        assignee = params.get("assignee", "")
        if assignee in ASSIGNEES or (assignee.isascii() and assignee.isdigit()):
            found.assignee = assignee
        else:
            found.problems.append(gettext("Unknown assignee filter ignored."))
        team = params.get("team", "")
        try:
            found.team = clean_team(team)
        except InvalidInput:
            found.problems.append(gettext("Unknown team filter ignored."))
        waited = params.get("waited", "")
        if waited:
            if waited.isascii() and waited.isdigit() and int(waited) <= MAX_WAITED_MINUTES:
                found.waited = int(waited)
            else:
                found.problems.append(gettext("The waiting time is a number of minutes."))
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            "q": self.q,
            "state": self.state,
            "assignee": self.assignee,
            "team": self.team,
            "waited": self.waited,
        }


def matching_sessions(q: str) -> list[str]:
    """Ids of the sessions whose title, participants' names or messages contain ``q``."""
    words = q.split()
    if not words:
        return []
    match = Q()
    for word in words:  # every word somewhere in the conversation
        match &= (
            Q(title__icontains=word)
            | Q(pk__in=Participant.objects.filter(display_name__icontains=word).values("session"))
            | Q(pk__in=Message.objects.filter(content__icontains=word).values("session"))
        )
    found = DurableSession.objects.filter(match).order_by("-updated_at")
    return [str(pk) for pk in found.values_list("pk", flat=True)[:MAX_MATCHES]]
