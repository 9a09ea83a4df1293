"""The unit of work: composite operations lock once, update the session row once, insert
their events in one statement and send one wake-up, however many steps they take."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from durable_sessions import service
from durable_sessions.delivery import publish
from durable_sessions.errors import SessionNotFound
from durable_sessions.models import Control, DurableSession, Event, Message, Participant
from durable_sessions.service.unit import session_write
from tests.factories import anonymous_session, make_user, seqs

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _metrics_off(ds_config):
    """A take-over from the queue makes the metrics read the audit rows after commit (the
    queue's waiting time): a read of its own, not a statement of the write measured here."""
    ds_config(METRICS_ENABLED=False)


_TRANSACTION = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)", re.I)


class Measured:
    """The statements and wake-ups of one operation."""

    def __init__(self, queries: list[str], wakeups: list[publish.Wakeup]) -> None:
        self.statements = [q for q in queries if not _TRANSACTION.match(q)]
        self.savepoints = [q for q in queries if q.lstrip().upper().startswith("SAVEPOINT")]
        table = DurableSession._meta.db_table
        # The row lock on SQLite is a no-op write (`SET last_seq = last_seq`): not a change.
        self.session_updates = [
            q
            for q in self.statements
            if re.match(rf'^\s*UPDATE "?{table}"?', q) and "last_seq = last_seq" not in q
        ]
        self.event_inserts = [
            q
            for q in self.statements
            if re.match(rf'^\s*INSERT INTO "?{Event._meta.db_table}"?', q)
        ]
        self.wakeups = Counter(w.target for w in wakeups)


def measure(monkeypatch, fn, *args, **kwargs) -> tuple[object, Measured]:
    sent: list[publish.Wakeup] = []
    monkeypatch.setattr(publish, "_send_committed", sent.extend)
    with CaptureQueriesContext(connection) as ctx:
        result = fn(*args, **kwargs)
    return result, Measured([q["sql"] for q in ctx.captured_queries], sent)


def assert_one_write(m: Measured, limit: int) -> None:
    assert len(m.statements) <= limit, "\n".join(m.statements)
    assert len(m.session_updates) == 1, m.session_updates
    assert len(m.event_inserts) == 1
    assert m.savepoints == []
    # One wake-up for the session's connections, one for queue views.
    assert sorted(m.wakeups.values()) == [1, 1], m.wakeups


def test_take_over_from_the_ai_is_one_write(monkeypatch):
    session, _ = anonymous_session()
    olga = make_user("olga", operator=True)
    _, m = measure(monkeypatch, service.take_over, session.id, olga)
    assert_one_write(m, 8)
    types = list(Event.objects.filter(session=session).values_list("type", flat=True))
    assert types[1:] == ["participant.joined", "control.changed", "message.created"]
    assert seqs(session) == [1, 2, 3, 4]


def test_hand_back_is_one_write(monkeypatch):
    session, _ = anonymous_session()
    olga = make_user("olga", operator=True)
    service.take_over(session.id, olga)
    _, m = measure(monkeypatch, service.hand_back, session.id, olga)
    assert_one_write(m, 6)
    assert DurableSession.objects.get(pk=session.pk).control == Control.AI


def test_a_reply_to_a_queued_session_joins_takes_over_and_posts_in_one_write(monkeypatch):
    session, _ = anonymous_session()
    service.request_handoff(session.id, by=None, reason="help")
    olga = make_user("olga", operator=True)
    result, m = measure(
        monkeypatch, service.operator_reply, session.id, operator=olga, content="Hi", client_id="o1"
    )
    assert_one_write(m, 8)
    types = list(Event.objects.filter(session=session).values_list("type", flat=True))
    joined = ["participant.joined", "control.changed", "message.created"]  # the notice
    assert types[-4:] == [*joined, "message.created"]  # then the reply
    assert result.message.content == "Hi" and result.seq == seqs(session)[-1]
    # The retry is answered from the database: no write, no wake-up.
    again, m = measure(
        monkeypatch, service.operator_reply, session.id, operator=olga, content="Hi", client_id="o1"
    )
    assert again.duplicate and again.seq == result.seq
    assert m.session_updates == [] and m.event_inserts == [] and not m.wakeups


def test_a_customer_message_is_one_write_with_its_run(monkeypatch):
    session, _ = anonymous_session()
    customer = Participant.objects.get(session=session, kind="customer")
    _, m = measure(
        monkeypatch, service.post_message, session.id, author=customer, content="hi", client_id="c"
    )
    assert len(m.session_updates) == 1 and len(m.event_inserts) == 1
    # The session's connections (with the "thinking" status), queue views, the workers.
    assert sorted(m.wakeups.values()) == [1, 1, 1]


def test_nested_units_share_one_lock_and_write_once(monkeypatch):
    session, _ = anonymous_session()

    def twice() -> None:
        with session_write(session.id) as outer:
            outer.append("session.note", {"n": 1})
            with session_write(session.id) as inner:
                assert inner is outer
                inner.append("session.note", {"n": 2})

    _, m = measure(monkeypatch, twice)
    assert len(m.statements) == 3  # lock, update, insert
    assert seqs(session) == [1, 2, 3]


def test_an_error_inside_a_unit_writes_nothing(monkeypatch):
    session, _ = anonymous_session()
    sent: list[publish.Wakeup] = []
    monkeypatch.setattr(publish, "_send_committed", sent.extend)
    with pytest.raises(RuntimeError), session_write(session.id) as w:
        w.append("session.note", {})
        w.set(control=Control.QUEUED)
        raise RuntimeError("the caller failed")
    assert seqs(session) == [1] and sent == []
    assert DurableSession.objects.get(pk=session.pk).control == Control.AI
    assert not Message.objects.filter(session=session).exists()


def test_a_missing_session_is_not_found():
    with pytest.raises(SessionNotFound), session_write("5f0c4a7e-1111-4222-8333-944445555666"):
        pass
