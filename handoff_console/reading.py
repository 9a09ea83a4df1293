"""What each operator has read: a mark per session, the unread count of the queue's rows.

A mark only moves forward and never past the session's log, so a stale page (or a
crafted request) cannot make read messages unread again or mark the future as read.
"""

from __future__ import annotations

import uuid

from django.db import transaction
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Greatest, Least

from durable_sessions.adapter import AnyUser
from durable_sessions.models import DurableSession, Message, Role
from handoff_console.models import ReadMark


def mark_read(session: DurableSession, user: AnyUser, seq: int) -> int:
    """Record that ``user`` has seen the log up to ``seq``; returns the mark now stored."""
    seq = max(0, min(seq, session.last_seq))
    with transaction.atomic():
        mark, created = ReadMark.objects.select_for_update().get_or_create(
            session=session, user=user, defaults={"seq": seq}
        )
        if not created and seq > mark.seq:
            ReadMark.objects.filter(pk=mark.pk).update(seq=Greatest("seq", Value(seq)))
            mark.seq = seq
    return mark.seq


def with_unread(sessions: QuerySet[DurableSession], user: AnyUser) -> QuerySet[DurableSession]:
    """Annotate ``unread``: the customer's messages after ``user``'s mark, at most 99."""
    mark = ReadMark.objects.filter(session=OuterRef("session"), user_id=user.pk).values("seq")[:1]
    unread = (
        Message.objects.filter(session=OuterRef("pk"), role=Role.USER)
        .filter(Q(seq__gt=Coalesce(Subquery(mark), Value(0))))
        .order_by()
        .values("session")
        .annotate(n=Count("pk"))
        .values("n")[:1]
    )
    return sessions.annotate(
        unread=Least(Coalesce(Subquery(unread, output_field=IntegerField()), Value(0)), Value(99))
    )


def read_mark(session_id: uuid.UUID | str, user: AnyUser) -> int:
    mark = ReadMark.objects.filter(session_id=session_id, user_id=user.pk).first()
    return mark.seq if mark else 0
