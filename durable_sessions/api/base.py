"""Base classes of the API views: everything a host's ``REST_FRAMEWORK`` could change is
pinned here, so the endpoints behave the same in every project."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rest_framework import serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from durable_sessions.adapter import Access
from durable_sessions.api.authentication import api_authenticators
from durable_sessions.api.errors import exception_handler
from durable_sessions.api.permissions import SessionAccess
from durable_sessions.api.schema import ApiSchema
from durable_sessions.models import DurableSession


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
    parser_classes = [JSONParser]
    permission_classes = [AllowAny]
    throttle_classes: list[type] = []
    versioning_class = None

    def get_authenticators(self) -> list[BaseAuthentication]:
        return api_authenticators()

    def get_exception_handler(self) -> Callable[[Exception, dict[str, Any]], Response | None]:
        return exception_handler


class SessionView(ApiView):
    """An endpoint of one session (``<session_id>`` in the URL), for its owner or operators.

    :class:`SessionAccess` sets :attr:`session` and :attr:`access` before the handler runs.
    """

    permission_classes = [SessionAccess]
    session: DurableSession
    access: Access
