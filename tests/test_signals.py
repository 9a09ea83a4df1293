"""Signals reach the host after commit, with the documented arguments, and a failing
receiver never undoes a change."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from django.db import transaction

from durable_sessions import service, signals
from durable_sessions.errors import SessionNotFound
from durable_sessions.models import AgentRun, Control, DurableSession, RunStatus
from tests.factories import anonymous_session, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@contextlib.contextmanager
def received(*watched):
    got: list[tuple[str, dict]] = []
    handlers = []
    for signal in watched:
        name = next(n for n, s in vars(signals).items() if s is signal)

        def handler(sender, _name=name, **kwargs):
            assert sender is DurableSession
            kwargs.pop("signal")
            got.append((_name, kwargs))

        signal.connect(handler, weak=False)
        handlers.append((signal, handler))
    try:
        yield got
    finally:
        for signal, handler in handlers:
            signal.disconnect(handler)


def test_the_lifecycle_of_a_session_is_signalled():
    olga, ivan = make_user("olga", operator=True), make_user("ivan", operator=True)
    every = [
        signals.session_created,
        signals.handoff_requested,
        signals.taken_over,
        signals.transferred,
        signals.handed_back,
        signals.session_closed,
    ]
    with received(*every) as got:
        session, _ = anonymous_session()
        service.request_handoff(session.id, by=None, reason="refund", summary="wants money")
        service.take_over(session.id, olga)
        service.transfer(session.id, olga, ivan)
        service.hand_back(session.id, ivan, reason="done")
        service.close_session(session.id, reason="resolved")
    assert [name for name, _ in got] == [
        "session_created",
        "handoff_requested",
        "taken_over",
        "transferred",
        "handed_back",
        "session_closed",
    ]
    assert all(kwargs["session_id"] == session.id for _, kwargs in got)
    args = dict(got)
    assert args["session_created"]["session"].pk == session.pk
    assert (args["handoff_requested"]["reason"], args["handoff_requested"]["summary"]) == (
        "refund",
        "wants money",
    )
    assert args["taken_over"]["operator"] == olga
    assert (args["transferred"]["operator"], args["transferred"]["to"]) == (olga, ivan)
    assert args["handed_back"]["operator"] == ivan
    assert args["session_closed"]["reason"] == "resolved"


def test_nothing_is_signalled_before_commit_nor_after_a_rollback():
    session, _ = anonymous_session()
    with received(signals.handoff_requested) as got:
        with transaction.atomic():
            service.request_handoff(session.id, by=None)
            assert got == []  # not yet committed
        assert len(got) == 1
    other, _ = anonymous_session("visitor-2")
    with received(signals.handoff_requested) as got:
        with pytest.raises(RuntimeError), transaction.atomic():
            service.request_handoff(other.id, by=None)
            raise RuntimeError("the host's view failed afterwards")
        assert got == []
    assert DurableSession.objects.get(pk=other.pk).control == Control.AI


def test_a_failing_receiver_is_logged_and_the_change_stays(caplog):
    session, _ = anonymous_session()

    def broken(sender, **kwargs):
        raise ValueError("the host's receiver is broken")

    signals.session_closed.connect(broken, weak=False)
    try:
        assert service.close_session(session.id) is True
    finally:
        signals.session_closed.disconnect(broken)
    assert DurableSession.objects.get(pk=session.pk).status == "closed"
    assert "signal receiver" in caplog.text and "broken" in caplog.text


def test_failed_and_crashed_runs_are_signalled(settings):
    settings.DURABLE_SESSIONS = {"RUN_MAX_ATTEMPTS": 1}
    from datetime import timedelta

    from django.utils import timezone

    from durable_sessions.service import runs

    session, _ = anonymous_session()
    customer = service.participant_for(session.id, "customer")
    with received(signals.run_failed, signals.run_crashed) as got:
        service.post_message(session.id, author=customer, content="hi")
        run = runs.claim(AgentRun.objects.get(session=session).pk, "w1")
        assert runs.finish(run.pk, "w1", RunStatus.FAILED, "the model refused")
        service.post_message(session.id, author=customer, content="again")
        second = runs.claim(AgentRun.objects.get(session=session, status="pending").pk, "w1")
        AgentRun.objects.filter(pk=second.pk).update(
            lease_expires_at=timezone.now() - timedelta(seconds=1)
        )
        assert service.crash_run(second.pk)
    assert got == [
        ("run_failed", {"session_id": session.id, "run_id": run.pk, "error": "the model refused"}),
        ("run_crashed", {"session_id": session.id, "run_id": second.pk, "escalated": True}),
    ]


def test_a_run_retried_after_its_worker_died_is_signalled():
    from datetime import timedelta

    from django.utils import timezone

    from durable_sessions.service import runs

    session, _ = anonymous_session()
    customer = service.participant_for(session.id, "customer")
    service.post_message(session.id, author=customer, content="hi")
    run = runs.claim(AgentRun.objects.get(session=session).pk, "w1")
    AgentRun.objects.filter(pk=run.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    with received(signals.run_retried, signals.run_crashed) as got:
        assert service.crash_run(run.pk)
    assert got == [
        (
            "run_retried",
            {"session_id": session.id, "run_id": run.pk, "attempt": 2, "reason": "worker_lost"},
        )
    ]


def test_a_host_view_posts_as_the_customer():
    session, _ = anonymous_session()
    first = service.post_customer_message(session.id, "Where is my order?", client_id="k1")
    again = service.post_customer_message(session.id, "Where is my order?", client_id="k1")
    assert not first.duplicate and again.duplicate and again.seq == first.seq
    assert first.message.author.kind == "customer" and first.message.role == "user"
    assert AgentRun.objects.filter(session=session).count() == 1
    with pytest.raises(SessionNotFound):
        service.post_customer_message(uuid.uuid4(), "hello")
