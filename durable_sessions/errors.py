"""Errors of the session service, each with a stable code that transports pass on.

Each class carries its HTTP status as ``status_code`` (as DRF's ``APIException`` does), so
the REST API needs no table of its own; the websocket sends the same ``code``.
:func:`error_payload` is the one shape every transport gives an error.
"""

from __future__ import annotations

import math
from typing import Any


def error_payload(
    code: str,
    message: str,
    *,
    field: str | None = None,
    ref: Any = None,
    retry_after: int | None = None,
) -> dict[str, Any]:
    """``{code, message, field?, ref?, retry_after?}``: an error as HTTP bodies and
    websocket frames carry it.

    ``field`` names the one input at fault; ``ref`` echoes the websocket frame refused;
    ``retry_after`` is the whole seconds to wait before trying again.
    """
    payload: dict[str, Any] = {"code": code, "message": message}
    if field:
        payload["field"] = field
    if ref is not None:
        payload["ref"] = ref
    if retry_after is not None:
        payload["retry_after"] = retry_after
    return payload


class ServiceError(Exception):
    """Base class: ``code`` is stable and documented; ``message`` says what was wrong."""

    code = "error"
    status_code = 400
    retry_after: int | None = None  # seconds to wait before trying again, if it helps

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        field = details.get("field")
        self.field: str | None = field if isinstance(field, str) else None

    def payload(self, *, ref: Any = None) -> dict[str, Any]:
        """This error in the shape of :func:`error_payload`."""
        return error_payload(
            self.code,
            self.message,
            field=self.field,
            ref=ref,
            retry_after=self.retry_after,
        )


class InvalidInput(ServiceError):
    code = "invalid_field"
    status_code = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)


class SessionNotFound(ServiceError):
    code = "not_found"
    status_code = 404


class SessionClosed(ServiceError):
    code = "session_closed"
    status_code = 409


class NotInControl(ServiceError):
    """The writer does not (or no longer) control the session."""

    code = "not_in_control"
    status_code = 409


class MessageFinished(ServiceError):
    """The message is no longer streaming (completed, cancelled or failed)."""

    code = "message_finished"
    status_code = 409


class RunNotOwned(ServiceError):
    """The writer no longer holds the run it writes for: the run ended, or its lease
    expired and it went back to pending or to another worker."""

    code = "run_not_owned"
    status_code = 409


class ReplyInProgress(ServiceError):
    code = "reply_in_progress"
    status_code = 409


class ClientIdConflict(ServiceError):
    """A client id was reused for different content."""

    code = "client_id_conflict"
    status_code = 409


class Conflict(ServiceError):
    """The session is not in the state the request expected (e.g. already claimed)."""

    code = "conflict"
    status_code = 409


class RateLimited(ServiceError):
    """A limit per visitor, user or IP address was reached; try again in ``retry_after``
    whole seconds (at least 1). Nothing was done."""

    code = "rate_limited"
    status_code = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


class StreamError(ServiceError):
    """A Durable Streams request refused; ``headers`` are the protocol's response headers
    that tell the client why (``Stream-Closed``, ``Producer-Expected-Seq``, ...)."""

    code = "stream_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


class StreamBadRequest(StreamError):
    code = "bad_request"
    status_code = 400


class StreamNotFound(StreamError):
    code = "not_found"
    status_code = 404


class StreamGone(StreamError):
    """The stream was deleted (or expired) while forks still read from it."""

    code = "gone"
    status_code = 410


class StreamConflict(StreamError):
    code = "conflict"
    status_code = 409


class StaleProducerEpoch(StreamError):
    """An idempotent producer of an older epoch wrote (a zombie): fenced off."""

    code = "stale_epoch"
    status_code = 403


class StreamTooLarge(StreamError):
    code = "too_large"
    status_code = 413


class AlreadyAnswered(ServiceError):
    """An approval request was answered already (by another device, another person, its
    expiry or a takeover); the answer that came first stands."""

    code = "already_answered"
    status_code = 409


class ApprovalNotFound(ServiceError):
    """No tool call with this approval id waits in the session."""

    code = "approval_not_found"
    status_code = 404


class NotAllowed(ServiceError):
    """The caller may not do this in this session (e.g. answer an approval that the
    policy gives to someone else)."""

    code = "not_allowed"
    status_code = 403


class NotEditable(ServiceError):
    """The message cannot be edited, regenerated or made the shown branch: an operator's
    message, a notice, a handoff record, another kind of message, or a message not (or no
    longer) where the request says."""

    code = "not_editable"
    status_code = 409


class HumanInControl(ServiceError):
    """A human operator has the conversation (or it waits for one): the customer cannot
    edit, regenerate or switch branches until it is back with the AI."""

    code = "human_in_control"
    status_code = 409
