"""The session service: the only code that writes sessions, participants, messages,
runs and events.

Every operation is one unit of work (:mod:`durable_sessions.service.unit`): it locks the
session row once, checks the state it read under that lock, collects its writes and
events, and applies them when it closes; the events are published to the session's
connections only after commit. Streaming deltas of many sessions share one transaction
(:mod:`durable_sessions.service.deltas`). Each operation has an async twin named with an
``a`` prefix, which runs it on the database thread and sends the wake-ups from the event
loop.
"""

from durable_sessions.delivery.publish import make_async
from durable_sessions.service import devices as devices
from durable_sessions.service.approvals import (
    ApprovalResult,
    answer_approval,
    expire_approvals,
    pending_approvals,
)
from durable_sessions.service.branches import (
    edit_message,
    hidden_ids,
    regenerate,
    switch_branch,
)
from durable_sessions.service.control import (
    change_control,
    close_by_operator,
    close_session,
    crash_run,
    hand_back,
    operator_reply,
    request_handoff,
    take_over,
    transfer,
)
from durable_sessions.service.deltas import DeltaWriter, RunLease, append_delta, delta_writer
from durable_sessions.service.messages import (
    PostResult,
    cancel_reply,
    fail_assistant_message,
    finish_assistant_message,
    post_customer_message,
    post_message,
    post_system_message,
    start_assistant_message,
)
from durable_sessions.service.rating import RateResult, rate_session, rating_of
from durable_sessions.service.requeue import release_claim, transfer_to_team
from durable_sessions.service.retention import (
    erase_customer,
    erase_session_customer,
    expired_sessions,
    purge_expired,
    retention_cutoff,
)
from durable_sessions.service.retries import release as release_run
from durable_sessions.service.runs import agent_status_frame
from durable_sessions.service.sessions import create_session, join_operator, participant_for
from durable_sessions.service.unit import SessionWrite, session_write

__all__ = [
    "ApprovalResult",
    "DeltaWriter",
    "PostResult",
    "RateResult",
    "RunLease",
    "SessionWrite",
    "aanswer_approval",
    "acancel_reply",
    "acrash_run",
    "acreate_session",
    "aedit_message",
    "aexpire_approvals",
    "afail_assistant_message",
    "afinish_assistant_message",
    "agent_status_frame",
    "answer_approval",
    "aoperator_reply",
    "apost_message",
    "append_delta",
    "arate_session",
    "aregenerate",
    "arelease_run",
    "arequest_handoff",
    "astart_assistant_message",
    "aswitch_branch",
    "cancel_reply",
    "change_control",
    "close_by_operator",
    "close_session",
    "crash_run",
    "create_session",
    "delta_writer",
    "edit_message",
    "erase_customer",
    "erase_session_customer",
    "expire_approvals",
    "expired_sessions",
    "fail_assistant_message",
    "finish_assistant_message",
    "hand_back",
    "hidden_ids",
    "join_operator",
    "operator_reply",
    "participant_for",
    "pending_approvals",
    "post_customer_message",
    "post_message",
    "post_system_message",
    "purge_expired",
    "rate_session",
    "rating_of",
    "regenerate",
    "release_claim",
    "release_run",
    "request_handoff",
    "retention_cutoff",
    "session_write",
    "start_assistant_message",
    "switch_branch",
    "take_over",
    "transfer",
    "transfer_to_team",
]

# The async twins that transports, the runtime and async host code call.
acreate_session = make_async(create_session)
apost_message = make_async(post_message)
aoperator_reply = make_async(operator_reply)
astart_assistant_message = make_async(start_assistant_message)
afinish_assistant_message = make_async(finish_assistant_message)
afail_assistant_message = make_async(fail_assistant_message)
acancel_reply = make_async(cancel_reply)
arequest_handoff = make_async(request_handoff)
acrash_run = make_async(crash_run)
arelease_run = make_async(release_run)
aanswer_approval = make_async(answer_approval)
aexpire_approvals = make_async(expire_approvals)
aedit_message = make_async(edit_message)
aregenerate = make_async(regenerate)
aswitch_branch = make_async(switch_branch)
arate_session = make_async(rate_session)
