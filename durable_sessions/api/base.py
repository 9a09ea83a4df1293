"""Base classes of the API views: everything a host's ``REST_FRAMEWORK`` could change is
pinned here, so the endpoints behave the same in every project."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.cache import add_never_cache_headers
from rest_framework import serializers, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from durable_sessions import wire
from durable_sessions.adapter import Access
from durable_sessions.api.authentication import api_authenticators
from durable_sessions.api.errors import exception_handler
from durable_sessions.api.parsers import BoundedJSONParser
from durable_sessions.api.permissions import (
    NOT_FOUND,
    SessionAccess,
    caller_access,
    parse_session_id,
)
from durable_sessions.api.schema import ApiSchema
from durable_sessions.models import DurableSession
from durable_sessions.service.messages import PostResult


def posted(result: PostResult) -> Response:
    """The answer to a stored message (new: 201; a retry of one stored before: 200)."""
    return Response(
        {
            "seq": result.seq,
            "duplicate": result.duplicate,
            "mode": result.mode,
            "message": wire.message_data(result.message),
        },
        status=status.HTTP_200_OK if result.duplicate else status.HTTP_201_CREATED,
    )


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """The validated data of ``data``; a :class:`ValidationError` names the first bad field."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class ApiView(APIView):
    """An API endpoint: JSON in and out, the app's authentication, errors and schema."""

    # Listed in the schema of :mod:`durable_sessions.api.docs` (see schema.only_api_endpoints).
    in_api_schema = True
    schema = ApiSchema()
    renderer_classes = [JSONRenderer]
    parser_classes = [BoundedJSONParser]
    permission_classes = [AllowAny]
    versioning_class = None

    def get_authenticators(self) -> list[BaseAuthentication]:
        return api_authenticators()

    def get_throttles(self) -> list[BaseThrottle]:
        # The host's DRF throttling applies (read per request, so a changed setting
        # counts), on top of the app's own limits per visitor, user and IP (LIMIT_*).
        return [throttle() for throttle in api_settings.DEFAULT_THROTTLE_CLASSES]

    def get_exception_handler(self) -> Callable[[Exception, dict[str, Any]], Response | None]:
        return exception_handler

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        # Transcripts are private: no browser, proxy or shared cache may keep a copy.
        add_never_cache_headers(response)
        return response


class SessionView(ApiView):
    """An endpoint of one session (``<session_id>`` in the URL), for its owner or operators.

    The session is loaded and its object permissions checked before the handler runs (in
    :meth:`initial`, so no handler can skip them); handlers read :attr:`session` and
    :attr:`access`.
    """

    permission_classes = [SessionAccess]
    session: DurableSession
    access: Access | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.session = self.get_object()

    def get_object(self) -> DurableSession:
        """The session of the URL, once the caller's access to it passed the permissions.

        An unknown or malformed id is a 404, like a session that is not the caller's.
        """
        session_id = parse_session_id(self.kwargs.get("session_id"))
        session = DurableSession.objects.filter(pk=session_id).first() if session_id else None
        if session is None:
            raise NotFound(NOT_FOUND)
        # Asked once: the permissions and the handler read the same answer.
        self.access = caller_access(self.request, session)
        self.check_object_permissions(self.request, session)
        return session
