"""Errors of the session service, each with a stable code that transports pass on."""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: ``code`` is stable and documented; ``message`` says what was wrong."""

    code = "error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(ServiceError):
    code = "invalid_field"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)
        self.field = field


class SessionNotFound(ServiceError):
    code = "not_found"


class SessionClosed(ServiceError):
    code = "session_closed"


class NotInControl(ServiceError):
    """The writer does not (or no longer) control the session."""

    code = "not_in_control"


class MessageFinished(ServiceError):
    """The message is no longer streaming (completed, cancelled or failed)."""

    code = "message_finished"


class ReplyInProgress(ServiceError):
    code = "reply_in_progress"


class ClientIdConflict(ServiceError):
    """A client id was reused for different content."""

    code = "client_id_conflict"


class Conflict(ServiceError):
    """The session is not in the state the request expected (e.g. already claimed)."""

    code = "conflict"
