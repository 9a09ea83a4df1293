"""The conversation as a tree: edits and regenerations add versions; one branch is shown.

Editing a customer's message or regenerating an answer adds a new *version* of it
(``Message.version_of`` names the first version of the sibling group). Nothing is deleted:
the old version and everything after it on the shown branch are *hidden under* the old
version (``Message.hidden_under``), and showing that version again brings them all back,
with the choices made inside them. The shown branch is the messages with no
``hidden_under``: what the agent reads as history and what pages show. Every change of it
is a ``branch.switched`` event in the log, so every device follows and resume stays exact.
A linear session never sets either column and pays nothing for this.

Only the customer's own messages and the agent's answers have versions. A message after
which an operator wrote or the control changed (a handoff record) cannot be edited or
regenerated, and nothing changes while a human has (or is about to have) control.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Q
from django.utils import timezone

from durable_sessions import wire
from durable_sessions.app_settings import ds_settings
from durable_sessions.errors import HumanInControl, NotEditable
from durable_sessions.models import Control, Message, MessageState, ParticipantKind, Role
from durable_sessions.service import runs
from durable_sessions.service.messages import PostResult, find_retry, stop_ai
from durable_sessions.service.unit import SessionWrite, session_write
from durable_sessions.service.validation import clean_client_id, clean_text

# The reason a reply streaming when the branch changed is cancelled with.
BRANCHED = "branched"
# Roles whose presence after a message freezes it: an operator's words, a notice (handoff).
_FREEZING = (Role.OPERATOR, Role.SYSTEM)
MAX_ID = 2**63


def group_of(message: Message) -> int:
    """The id of a message's sibling group (its first version)."""
    return message.version_of_id or message.pk


def _require_ai(w: SessionWrite) -> None:
    w.require_open()
    if w.control != Control.AI:
        raise HumanInControl(
            "a member of our team has this conversation: messages cannot be edited, "
            "regenerated or switched until it is back with the assistant"
        )


def _message(w: SessionWrite, message_id: Any) -> Message:
    if isinstance(message_id, bool) or not isinstance(message_id, int):
        raise NotEditable("message_id: must be the id of a message", field="message_id")
    if not 0 < message_id < MAX_ID:  # beyond a database integer: no message has it
        raise NotEditable(f"message {message_id} is not in this session", field="message_id")
    message = (
        Message.objects.select_related("author")
        .filter(session_id=w.session_id, pk=message_id)
        .first()
    )
    if message is None:
        raise NotEditable(f"message {message_id} is not in this session", field="message_id")
    return message


def _shown_after(w: SessionWrite, message: Message) -> list[tuple[int, str]]:
    """``(id, role)`` of the messages after ``message`` on the shown branch: its subtree."""
    return list(
        Message.objects.filter(
            session_id=w.session_id, hidden_under__isnull=True, seq__gt=message.seq
        )
        .order_by("seq")
        .values_list("pk", "role")
    )


def _require_free(message: Message, after: list[tuple[int, str]]) -> None:
    if message.hidden_under_id is not None:
        raise NotEditable(f"message {message.pk} is not on the shown branch", field="message_id")
    if any(role in _FREEZING for _, role in after):
        raise NotEditable(
            f"message {message.pk} is followed by an operator's message or a handoff: "
            "it can no longer be changed",
            field="message_id",
        )


def _hide(root: Message, after: list[tuple[int, str]]) -> list[int]:
    ids = [root.pk, *(pk for pk, _ in after)]
    Message.objects.filter(pk__in=ids).update(hidden_under=root.pk)
    return ids


def _switched(
    w: SessionWrite, group: int, active: Any, shown: list[int], hidden: list[int]
) -> None:
    """The ``branch.switched`` event; ``active`` may be a function (an id known once saved)."""
    w.append(
        wire.BRANCH_SWITCHED,
        lambda: {
            "group": group,
            "active": active() if callable(active) else active,
            "shown": shown,
            "hidden": hidden,
        },
    )


def edit_message(
    session_id: uuid.UUID | str, message_id: Any, content: Any, *, client_id: Any = None
) -> PostResult:
    """A new version of one of the customer's messages, with ``content``; the old one and
    what followed it are hidden (kept), and the agent answers the new version.

    A retry with the same ``client_id`` returns the version it stored."""
    content = clean_text("content", content, limit=ds_settings.MAX_MESSAGE_CHARS)
    client_id = clean_client_id(client_id)
    with session_write(session_id) as w:
        customer = w.participant(ParticipantKind.CUSTOMER)
        retry = find_retry(w, client_id, author=customer, content=content)
        if retry is not None:
            return retry
        _require_ai(w)
        target = _message(w, message_id)
        if target.role != Role.USER or target.author.kind != ParticipantKind.CUSTOMER:
            raise NotEditable(
                f"message {target.pk} is not the customer's: only your own messages can be edited",
                field="message_id",
            )
        after = _shown_after(w, target)
        _require_free(target, after)
        stop_ai(w, BRANCHED)
        hidden = _hide(target, after)
        now = timezone.now()
        version = Message(
            author=customer,
            role=Role.USER,
            content=content,
            state=MessageState.COMPLETE,
            client_id=client_id,
            created_at=now,
            completed_at=now,
            version_of_id=group_of(target),
        )
        _switched(w, group_of(target), lambda: version.pk, [], hidden)
        seq = w.add_message(version)
        runs.start_pending(w, version)
        return PostResult(version, seq, False)


def regenerate(session_id: uuid.UUID | str, message_id: Any) -> list[int]:
    """Hide one of the agent's answers (kept, with what followed it) and start a run that
    writes a new version of it; returns the hidden ids."""
    with session_write(session_id) as w:
        _require_ai(w)
        target = _message(w, message_id)
        if target.role != Role.ASSISTANT:
            raise NotEditable(
                f"message {target.pk} is not an answer of the assistant", field="message_id"
            )
        after = _shown_after(w, target)
        _require_free(target, after)
        question = (
            Message.objects.filter(
                session_id=w.session_id,
                hidden_under__isnull=True,
                role=Role.USER,
                seq__lt=target.seq,
            )
            .order_by("-seq")
            .first()
        )
        if question is None:
            raise NotEditable(f"message {target.pk} answers no message", field="message_id")
        stop_ai(w, BRANCHED)
        hidden = _hide(target, after)
        _switched(w, group_of(target), None, [], hidden)
        runs.start_pending(w, question, regenerates=target)
        return hidden


def switch_branch(session_id: uuid.UUID | str, message_id: Any) -> bool:
    """Show the branch of version ``message_id`` instead of its shown sibling; False when
    it is shown already. A shown branch that ends with a customer's message is answered."""
    with session_write(session_id) as w:
        _require_ai(w)
        target = _message(w, message_id)
        if target.hidden_under_id is None:
            return False
        group = group_of(target)
        if target.hidden_under_id != target.pk:
            raise NotEditable(
                f"message {target.pk} is inside a branch that is not shown", field="message_id"
            )
        current = (
            Message.objects.filter(Q(pk=group) | Q(version_of_id=group))
            .filter(session_id=w.session_id, hidden_under__isnull=True)
            .first()
        )
        if current is None:
            raise NotEditable(
                f"message {target.pk} has no version on the shown branch", field="message_id"
            )
        after = _shown_after(w, current)
        _require_free(current, after)
        stop_ai(w, BRANCHED)
        hidden = _hide(current, after)
        shown = list(
            Message.objects.filter(session_id=w.session_id, hidden_under=target.pk).values_list(
                "pk", flat=True
            )
        )
        Message.objects.filter(pk__in=shown).update(hidden_under=None)
        _switched(w, group, target.pk, sorted(shown), hidden)
        last = (
            Message.objects.filter(session_id=w.session_id, hidden_under__isnull=True)
            .order_by("-seq")
            .first()
        )
        if last is not None and last.role == Role.USER:
            runs.start_pending(w, last)
        return True


def version_numbers(messages: list[Message]) -> dict[int, tuple[int, int]]:
    """Per message: which version of its sibling group it is (1 for the first) and how
    many versions the group has, in creation order; (1, 1) for a message never edited or
    regenerated. One query for the whole list."""
    groups = {m.version_of_id or m.pk for m in messages}
    later: dict[int, list[int]] = {}
    if groups:
        rows = (
            Message.objects.filter(version_of__in=groups)
            .order_by("seq")
            .values_list("version_of_id", "pk")
        )
        for group, pk in rows:
            later.setdefault(group, []).append(pk)
    numbers: dict[int, tuple[int, int]] = {}
    for message in messages:
        group = message.version_of_id or message.pk
        versions = [group, *later.get(group, [])]
        position = versions.index(message.pk) + 1 if message.pk in versions else 1
        numbers[message.pk] = (position, len(versions))
    return numbers


def hidden_ids(session_id: uuid.UUID) -> list[int]:
    """The messages not on the shown branch (what a snapshot tells a new device)."""
    return list(
        Message.objects.filter(session_id=session_id, hidden_under__isnull=False)
        .order_by("seq")
        .values_list("pk", flat=True)
    )
