"""The session service: the only code that writes sessions, participants, messages and events.

Every call runs in one transaction: it takes the session row with
``UPDATE ... SET last_seq = last_seq + n ... RETURNING`` (a row lock, no table lock),
checks the state it read under that lock, writes, appends its events with the next
``seq`` values and publishes them to the session's group only after commit
(see :mod:`durable_sessions.service.log`). Each function has an async twin named with
an ``a`` prefix, which runs it on the database thread and sends the wake-ups from the
event loop.
"""

from durable_sessions.delivery.publish import make_async
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
from durable_sessions.service.deltas import DeltaWriter, delta_writer
from durable_sessions.service.log import Locked, lock_session
from durable_sessions.service.messages import (
    PostResult,
    agent_status_frame,
    append_assistant_text,
    cancel_reply,
    fail_assistant_message,
    finish_assistant_message,
    post_message,
    post_system_message,
    start_assistant_message,
)
from durable_sessions.service.sessions import create_session, join_operator, participant_for

__all__ = [
    "DeltaWriter",
    "Locked",
    "PostResult",
    "aappend_assistant_text",
    "acancel_reply",
    "achange_control",
    "aclose_by_operator",
    "aclose_session",
    "acrash_run",
    "acreate_session",
    "afail_assistant_message",
    "afinish_assistant_message",
    "agent_status_frame",
    "ahand_back",
    "ajoin_operator",
    "aoperator_reply",
    "apost_message",
    "apost_system_message",
    "append_assistant_text",
    "arequest_handoff",
    "astart_assistant_message",
    "atake_over",
    "atransfer",
    "cancel_reply",
    "change_control",
    "close_by_operator",
    "close_session",
    "crash_run",
    "create_session",
    "delta_writer",
    "fail_assistant_message",
    "finish_assistant_message",
    "hand_back",
    "join_operator",
    "lock_session",
    "operator_reply",
    "participant_for",
    "post_message",
    "post_system_message",
    "request_handoff",
    "start_assistant_message",
    "take_over",
    "transfer",
]

acreate_session = make_async(create_session)
ajoin_operator = make_async(join_operator)
apost_message = make_async(post_message)
aoperator_reply = make_async(operator_reply)
apost_system_message = make_async(post_system_message)
astart_assistant_message = make_async(start_assistant_message)
aappend_assistant_text = make_async(append_assistant_text)
afinish_assistant_message = make_async(finish_assistant_message)
afail_assistant_message = make_async(fail_assistant_message)
acancel_reply = make_async(cancel_reply)
arequest_handoff = make_async(request_handoff)
achange_control = make_async(change_control)
atake_over = make_async(take_over)
ahand_back = make_async(hand_back)
atransfer = make_async(transfer)
aclose_session = make_async(close_session)
aclose_by_operator = make_async(close_by_operator)
acrash_run = make_async(crash_run)
