"""What the admin page of one session shows beyond its fields.

The transcript (one page of messages), the participants and the handoff timeline,
each read with a fixed number of queries however long the session is. Nothing here
writes: the admin changes sessions only through the session service.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.paginator import Page, Paginator
from django.http import HttpRequest
from django.utils.translation import gettext, pgettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from durable_sessions import wire
from durable_sessions.app_settings import ds_settings
from durable_sessions.models import (
    AgentRun,
    Control,
    DurableSession,
    Event,
    HandoffRecord,
    Message,
    MessagePart,
    MessageState,
    Participant,
    ParticipantKind,
    PartState,
    PartType,
    Role,
)
from durable_sessions.service.text import with_streaming_text

TRANSCRIPT_PAGE_SIZE = 100
# A session flipping control more often than this is shown in full in the event log.
TIMELINE_LIMIT = 100
PAGE_PARAM = "transcript_page"

_BADGES = {
    MessageState.STREAMING: _("streaming…"),
    MessageState.CANCELLED: _("cancelled"),
    MessageState.FAILED: _("failed"),
}


@dataclass(frozen=True)
class TranscriptEntry:
    """One message of the transcript with how its reply ended, if it did not complete."""

    message: Message
    css_class: str
    badge: str
    note: str
    # A typed reply's parts other than its text, as (kind, title, detail) lines.
    parts: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class HandoffEntry:
    """One ``control.changed`` event, ready to show as a row of the timeline."""

    seq: int
    at: datetime
    previous: str
    control: str
    reason: str
    by: str
    operator: str


def _control_label(value: Any) -> str:
    try:
        return str(Control(value).label)
    except ValueError:
        return str(value or "—")


def _endings(session: DurableSession, message_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The payloads of the cancel/fail events of the given messages (one query)."""
    if not message_ids:
        return {}
    rows = Event.objects.filter(
        session=session,
        type__in=[wire.MESSAGE_CANCELLED, wire.MESSAGE_FAILED],
        payload__message_id__in=message_ids,
    ).values_list("payload", flat=True)
    return {row["message_id"]: row for row in rows if isinstance(row, dict)}


# A customer's message sent while the agent answered: how it was taken.
_MODE_NOTES = {
    "queue": _("Sent while the agent answered: queued after that answer."),
    "steer": _("Sent while the agent answered: steered that answer."),
    "interrupt": _("Sent while the agent answered: interrupted that answer."),
}


def _entry(message: Message, ending: dict[str, Any] | None) -> TranscriptEntry:
    role = message.role if message.role in Role.values else "other"
    note = ""
    if message.state == MessageState.CANCELLED:
        reason = (ending or {}).get("reason")
        if reason:
            note = gettext("Stopped (%(reason)s); the partial text is kept.") % {"reason": reason}
        else:
            note = gettext("Stopped; the partial text is kept.")
    elif message.state == MessageState.FAILED:
        error = str((ending or {}).get("error") or gettext("unknown"))
        note = gettext("Error: %(error)s") % {"error": error}
    elif message.state == MessageState.STREAMING:
        note = gettext("The reply was still being written when this page was loaded.")
    elif message.send_mode:
        note = str(_MODE_NOTES.get(message.send_mode, ""))
    return TranscriptEntry(
        message=message,
        css_class=f"ds-role-{role} ds-state-{message.state}",
        badge=str(_BADGES.get(message.state, "")),
        note=note,
        parts=tuple(_part_line(p) for p in message.parts.all() if p.type != PartType.TEXT),
    )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)[:2000]


def _part_line(part: MessagePart) -> tuple[str, str, str]:
    """How the admin shows a part (all of it text, escaped by the template)."""
    data = part.data or {}
    if part.type == PartType.REASONING:
        return ("reasoning", str(PartType.REASONING.label), part.text)
    if part.type == PartType.TOOL_CALL:
        detail = gettext("input %(input)s") % {"input": _json(part.input)}
        if part.state == PartState.DONE:
            detail += " → " + gettext("output %(output)s") % {"output": _json(part.output)}
        elif part.error:
            detail += f" → {part.error}"
        if part.approvers:
            detail += "; " + _approval_text(part)
        state = _choice_label(PartState, part.state)
        title = gettext("Tool call %(tool)s (%(state)s)") % {"tool": part.tool_name, "state": state}
        return ("tool", title, detail)
    if part.type == PartType.SOURCE:
        source = f"{data.get('title', '')} {data.get('url', '')}".strip()
        return ("source", str(PartType.SOURCE.label), source)
    title = gettext("Data %(name)s") % {"name": data.get("name", "")}
    return ("data", title.strip(), _json(data.get("data")))


# Lower case: the words stand inside a sentence.
_APPROVERS = {
    "any": _("the customer or an operator"),
    "customer": _("the customer"),
    "operator": _("an operator"),
}
_DECISIONS = {
    "approved": pgettext_lazy("tool call", "approved"),
    "denied": pgettext_lazy("tool call", "denied"),
    "cancelled": pgettext_lazy("tool call", "cancelled"),
}


def _choice_label(choices: type[Any], value: str) -> str:
    """The translated label of a stored choice; an unknown value as it is."""
    try:
        return str(choices(value).label)
    except ValueError:
        return value


def _approval_text(part: MessagePart) -> str:
    """Who answers the call's approval and what they answered (or that it is pending)."""
    approvers = str(_APPROVERS.get(part.approvers, part.approvers))
    answer = str(_DECISIONS.get(part.decision, part.decision)) or pgettext("approval", "pending")
    text = gettext("approval by %(approvers)s: %(answer)s") % {
        "approvers": approvers,
        "answer": answer,
    }
    if part.decided_by:
        text += f" ({part.decided_by.display_name})"
    return text


def transcript_page(
    request: HttpRequest, session: DurableSession
) -> tuple[Page, list[TranscriptEntry], list[tuple[str, str]]]:
    """One page of the transcript, its entries and the pager links (label, query string)."""
    messages = (
        Message.objects.filter(session=session)
        .select_related("author")
        .prefetch_related(wire.parts_prefetch())
        .order_by("seq")
    )
    page = Paginator(messages, TRANSCRIPT_PAGE_SIZE).get_page(request.GET.get(PAGE_PARAM))
    items = list(page.object_list)
    with_streaming_text(items)
    endings = _endings(
        session,
        [m.pk for m in items if m.state in (MessageState.CANCELLED, MessageState.FAILED)],
    )
    versioned = _versioned(session)
    entries = [_with_branch(_entry(m, endings.get(m.pk)), versioned) for m in items]
    return page, entries, _pager_links(request, page)


def _versioned(session: DurableSession) -> dict[int, list[int]]:
    """Sibling group -> its versions' ids in order, for groups with more than one (one
    query; none in a linear session)."""
    groups: dict[int, list[int]] = {}
    rows = Message.objects.filter(session=session, version_of__isnull=False).order_by("seq")
    for pk, group in rows.values_list("pk", "version_of_id"):
        groups.setdefault(group, [group]).append(pk)
    return groups


def _with_branch(entry: TranscriptEntry, versioned: dict[int, list[int]]) -> TranscriptEntry:
    """The entry with where its message stands among its versions and the shown branch."""
    message = entry.message
    versions = versioned.get(message.version_of_id or message.pk, [])
    notes = []
    if len(versions) > 1:
        number = {"number": versions.index(message.pk) + 1, "total": len(versions)}
        notes.append(gettext("Version %(number)s of %(total)s.") % number)
    if message.hidden_under_id is not None:
        notes.append(gettext("Not on the shown branch (kept)."))
    elif versions:
        notes.append(gettext("On the shown branch."))
    if not notes:
        return entry
    return replace(
        entry,
        note=" ".join(filter(None, [entry.note, *notes])),
        css_class=entry.css_class + (" ds-hidden" if message.hidden_under_id else ""),
    )


def _pager_links(request: HttpRequest, page: Page) -> list[tuple[str, str]]:
    if page.paginator.num_pages <= 1:
        return []
    wanted = [(pgettext("page", "First"), 1)]
    if page.has_previous():
        wanted.append((pgettext("page", "Previous"), page.previous_page_number()))
    if page.has_next():
        wanted.append((pgettext("page", "Next"), page.next_page_number()))
    wanted.append((pgettext("page", "Last"), page.paginator.num_pages))
    links = []
    for label, number in wanted:
        # Keep the other parameters (e.g. the changelist filters to go back to).
        params = request.GET.copy()
        params[PAGE_PARAM] = str(number)
        links.append((label, "?" + params.urlencode() + "#transcript"))
    return links


def participants(session: DurableSession) -> list[Participant]:
    return list(Participant.objects.filter(session=session).select_related("user").order_by("id"))


def handoff_timeline(session: DurableSession) -> tuple[list[HandoffEntry], bool]:
    """The latest control changes, oldest first, and whether older ones were left out."""
    rows = list(
        Event.objects.filter(session=session, type=wire.CONTROL_CHANGED)
        .order_by("-seq")
        .values_list("seq", "created_at", "payload")[: TIMELINE_LIMIT + 1]
    )
    truncated = len(rows) > TIMELINE_LIMIT
    rows = list(reversed(rows[:TIMELINE_LIMIT]))
    operator_ids = {
        p.get("assigned_operator_id")
        for _, _, p in rows
        if isinstance(p, dict) and p.get("assigned_operator_id") is not None
    }
    users = get_user_model()._default_manager.in_bulk(operator_ids) if operator_ids else {}
    # Who acted from the admin: the customer's copy names nobody, the audit row the user.
    actors = {
        record.seq: record.actor.get_username()
        for record in HandoffRecord.objects.filter(
            session=session, seq__in=[seq for seq, _, _ in rows], actor__isnull=False
        ).select_related("actor")
    }
    entries = []
    for seq, at, payload in rows:
        payload = payload if isinstance(payload, dict) else {}
        by = payload.get("by")
        operator = users.get(payload.get("assigned_operator_id"))
        entries.append(
            HandoffEntry(
                seq=seq,
                at=at,
                previous=_control_label(payload.get("previous")),
                control=_control_label(payload.get("control")),
                reason=str(payload.get("reason") or ""),
                by=_by_text(by, actors.get(seq)),
                operator=operator.get_username() if operator is not None else "",
            )
        )
    return entries, truncated


def _by_text(by: Any, actor: str | None) -> str:
    """Who changed control: the participant the event names (with their kind), else the
    staff user the audit row names."""
    if isinstance(by, dict):
        kind = _choice_label(ParticipantKind, str(by.get("kind") or ""))
        return f"{by.get('display_name')} ({kind})"
    if actor:
        return gettext("%(name)s (staff)") % {"name": actor}
    return ""


def agent_runs(session: DurableSession) -> list[AgentRun]:
    """The session's latest runs, newest first, with their attempts."""
    return list(AgentRun.objects.filter(session=session).order_by("-id")[:TIMELINE_LIMIT])


def detail_context(request: HttpRequest, session: DurableSession) -> dict[str, Any]:
    """The template context of the sections below the session's fields."""
    page, entries, links = transcript_page(request, session)
    timeline, timeline_truncated = handoff_timeline(session)
    return {
        "ds_transcript_page": page,
        "ds_transcript": entries,
        "ds_transcript_links": links,
        "ds_participants": participants(session),
        "ds_timeline": timeline,
        "ds_timeline_truncated": timeline_truncated,
        "ds_runs": agent_runs(session),
        "ds_max_attempts": ds_settings.RUN_MAX_ATTEMPTS,
    }
