"""Signals: the host project's extension points, sent once a change is committed.

Connect a receiver as with any Django signal::

    from django.dispatch import receiver
    from durable_sessions import signals

    @receiver(signals.handoff_requested)
    def page_the_team(sender, session_id, reason, **kwargs):
        ...

Every signal is sent with ``sender=DurableSession`` and ``session_id`` (a UUID), after the
transaction that made the change committed: a receiver sees the committed state, and a
receiver that fails is logged and cannot undo the change. Receivers run in the thread that
made the change (often the database thread of an ASGI process): keep them short, and hand
slow work (mail, webhooks) to a queue. The arguments of each are listed below and in
docs/python-api.md.
"""

from __future__ import annotations

from django.dispatch import Signal

#: A session was created. ``session``: the DurableSession.
session_created = Signal()

#: The session was queued for a human. ``by``: the Participant who asked (customer or
#: agent) or None; ``reason``, ``summary``: text (the agent's summary for the operator).
handoff_requested = Signal()

#: An operator took the session over (from the AI or the queue). ``operator``: the user;
#: ``reason``: text.
taken_over = Signal()

#: The operator holding the session passed it to another. ``operator``, ``to``: users;
#: a transfer to a team has ``to=None`` and ``team`` (its slug).
transferred = Signal()

#: The operator holding the session handed it back to the AI. ``operator``: the user;
#: ``reason``: text.
handed_back = Signal()

#: The session was closed. ``by``: the Participant who closed it, or None; ``actor``: the
#: user who acted (operator, admin) or None; ``reason``: text.
session_closed = Signal()

#: The agent failed a run (an error of the agent; the reply keeps its partial text).
#: ``run_id``: int; ``error``: text.
run_failed = Signal()

#: A run's process died (its lease expired). ``run_id``: int; ``escalated``: whether the
#: session moved to the human queue (``ESCALATE_ON_CRASH``).
run_crashed = Signal()

#: A run lost its worker and is pending again for another one: ``run_id``: int;
#: ``attempt``: the number of the attempt to come; ``reason``: ``"worker_lost"`` (its
#: lease expired) or ``"handed_back"`` (its worker stopped).
run_retried = Signal()
