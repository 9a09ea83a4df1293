"""One JSON shape for every error of the API: ``{"error": {"code", "message", "field"?}}``.

The codes are stable and documented in docs/api.md. Service errors keep the code they
have on the websocket and bring their own HTTP status (:mod:`durable_sessions.errors`);
DRF's exceptions bring theirs too, and get a stable code from :data:`DRF_CODES`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from durable_sessions.api.parsers import TooLarge
from durable_sessions.errors import RateLimited, ServiceError, error_payload
from durable_sessions.service.validation import printable

# Code of each DRF exception class; checked in order, so subclasses come first.
DRF_CODES: tuple[tuple[type[exceptions.APIException], str], ...] = (
    (exceptions.ParseError, "bad_json"),
    (exceptions.AuthenticationFailed, "authentication_failed"),
    (exceptions.NotAuthenticated, "not_authenticated"),
    (exceptions.PermissionDenied, "permission_denied"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.Throttled, "rate_limited"),
)


class CsrfFailed(exceptions.PermissionDenied):
    """A cookie-authenticated unsafe request without a valid CSRF token."""

    default_code = "csrf_failed"


def _first_error(detail: Any, path: str = "") -> tuple[str, str]:
    """The dotted field name and message of the first error in a validation ``detail``."""
    if isinstance(detail, Mapping):
        name, value = next(iter(detail.items()))
        name = str(name)
        if name in ("non_field_errors", "detail"):
            return _first_error(value, path)
        return _first_error(value, f"{path}.{name}" if path else name)
    if isinstance(detail, Sequence) and not isinstance(detail, str) and detail:
        return _first_error(detail[0], path)
    return path, str(detail)


def validation_error(exc: exceptions.ValidationError) -> tuple[str, str, str | None]:
    field, message = _first_error(exc.detail)
    if not field:
        return "bad_request", message, None
    return "invalid_field", f"{field}: {message}", field


def describe(exc: Exception) -> tuple[int, str, str, str | None] | None:
    """Status, code, message and field of a handled exception; None for a server error."""
    if isinstance(exc, ServiceError):
        return exc.status_code, exc.code, exc.message, exc.field
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = TooLarge()
    if not isinstance(exc, exceptions.APIException):
        return None
    if isinstance(exc, exceptions.ValidationError):
        code, message, field = validation_error(exc)
        return exc.status_code, code, message, field
    if isinstance(exc, CsrfFailed):
        return exc.status_code, "csrf_failed", str(exc.detail), None
    code = next((c for cls, c in DRF_CODES if isinstance(exc, cls)), exc.default_code)
    detail = exc.detail
    message = str(detail) if isinstance(detail, str) else str(_first_error(detail)[1])
    return exc.status_code, str(code), message, None


def retry_after_of(exc: Exception) -> int | None:
    """Whole seconds to wait before trying again (a limit reached), or None."""
    if isinstance(exc, ServiceError):
        return exc.retry_after
    wait = getattr(exc, "wait", None)  # DRF's Throttled
    return None if wait is None else max(1, math.ceil(wait))


def rate_limited_response(error: RateLimited) -> JsonResponse:
    """A refusal outside a DRF view (the long poll's wrapper): same body and header."""
    return JsonResponse(
        {"error": error.payload()},
        status=error.status_code,
        headers={"Retry-After": str(error.retry_after)},
    )


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler of the API views: the error shape above, or None (a 500)."""
    described = describe(exc)
    if described is None:
        return None
    status_code, code, message, field = described
    headers: dict[str, str] = {}
    authenticate = getattr(exc, "auth_header", None)
    if authenticate:
        headers["WWW-Authenticate"] = authenticate
    retry_after = retry_after_of(exc)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    # Like DRF's own handler: a request running in ATOMIC_REQUESTS is rolled back.
    set_rollback()
    # A client's key may hold a lone surrogate, which the UTF-8 body could not carry.
    field = printable(field) if field else field
    body = {"error": error_payload(code, printable(message), field=field, retry_after=retry_after)}
    return Response(body, status=status_code, headers=headers)
