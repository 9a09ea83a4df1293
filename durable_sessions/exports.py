"""Transcripts as JSON documents: the admin's export action and host code share one shape.

``export_document(DurableSession.objects.filter(...))`` returns
``{"format", "version", "exported_at", "sessions": [...]}``; each session holds its data,
participants, messages and whole event log, messages and events in the shapes clients
receive (docs/protocol.md). Reading only: nothing here writes.

The retention command's archive is a JSON-lines file (gzip-compressed when its name ends
with ``.gz``) of :func:`archive_records`: one session per line, each line a whole session
export with ``format`` ``"durable-sessions.archive"``; :func:`read_archive` reads it back.
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from durable_sessions import wire
from durable_sessions.errors import SessionNotFound
from durable_sessions.models import DurableSession, Event, Message, Participant

EXPORT_FORMAT = "durable-sessions.export"
EXPORT_VERSION = 1
ARCHIVE_FORMAT = "durable-sessions.archive"
ARCHIVE_VERSION = 1


def _participant_export(participant: Participant) -> dict[str, Any]:
    return {
        **wire.participant_data(participant),
        "joined_at": wire.iso(participant.joined_at),
        "left_at": wire.iso(participant.left_at),
    }


def _user_export(user: Any) -> dict[str, Any] | None:
    return None if user is None else {"id": user.pk, "username": user.get_username()}


def session_export(session: DurableSession) -> dict[str, Any]:
    """One session as exported: its data, participants, messages and whole event log.

    Messages and events have the shapes clients receive (docs/protocol.md).
    """
    data = wire.session_data(session)
    data["updated_at"] = wire.iso(session.updated_at)
    data["owner"] = _user_export(session.owner)
    data["anonymous"] = session.owner_id is None
    data["assigned_operator"] = _user_export(session.assigned_operator)
    return {
        "session": data,
        "participants": [_participant_export(p) for p in session.participants.all()],
        "messages": [wire.message_data(m) for m in session.messages.all()],
        "events": [wire.event_wire(e) for e in session.events.all()],
    }


def _exported(
    queryset: QuerySet[DurableSession],
    prepare: Callable[[list[Message]], None] | None = None,
) -> list[DurableSession]:
    """The selected sessions with everything an export reads, in a fixed number of queries.

    ``prepare`` gets each session's messages before they are written out (the admin
    passes ``service.text.with_streaming_text``: a streaming reply's text is in its
    deltas until it ends)."""
    sessions = list(
        DurableSession.objects.filter(pk__in=queryset.values("pk"))
        .select_related("owner", "assigned_operator")
        .prefetch_related(
            Prefetch("participants", queryset=Participant.objects.order_by("id")),
            Prefetch(
                "messages",
                queryset=Message.objects.select_related("author")
                .prefetch_related(wire.parts_prefetch())
                .order_by("seq"),
            ),
            Prefetch("events", queryset=Event.objects.order_by("seq")),
        )
        .order_by("created_at", "pk")
    )
    if prepare is not None:
        for session in sessions:
            prepare(list(session.messages.all()))
    return sessions


def export_document(
    queryset: QuerySet[DurableSession],
    *,
    prepare: Callable[[list[Message]], None] | None = None,
) -> dict[str, Any]:
    """The export of the selected sessions, read with a fixed number of queries."""
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": wire.iso(timezone.now()),
        "sessions": [session_export(s) for s in _exported(queryset, prepare)],
    }


def archive_records(
    queryset: QuerySet[DurableSession],
    *,
    prepare: Callable[[list[Message]], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """One archive record per selected session: ``format``, ``version``, ``archived_at``
    and the session's export (``session``, ``participants``, ``messages``, ``events``)."""
    archived_at = wire.iso(timezone.now())
    for session in _exported(queryset, prepare):
        yield {
            "format": ARCHIVE_FORMAT,
            "version": ARCHIVE_VERSION,
            "archived_at": archived_at,
            **session_export(session),
        }


def archive_line(record: dict[str, Any]) -> str:
    """One record as a line of the archive file (JSON, no newline inside)."""
    return json.dumps(record, cls=DjangoJSONEncoder, ensure_ascii=False) + "\n"


def open_archive(path: str | Path, mode: str = "rt") -> IO[str]:
    """An archive file as text, gzip-compressed when its name ends with ``.gz``."""
    if str(path).endswith(".gz"):
        return gzip.open(path, mode, encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8")


def read_archive(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of an archive file, in order."""
    with open_archive(path) as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def export_session(
    session_id: uuid.UUID | str, *, prepare: Callable[[list[Message]], None] | None = None
) -> dict[str, Any]:
    """The export document of one session; ``SessionNotFound`` when there is none."""
    queryset = DurableSession.objects.filter(pk=session_id)
    document = export_document(queryset, prepare=prepare)
    if not document["sessions"]:
        raise SessionNotFound(f"session {session_id} does not exist")
    return document
