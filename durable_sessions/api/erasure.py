"""Erasing a session's customer over the API (a data-protection request).

For operators who also hold the sessions' delete permission
(``durable_sessions.delete_durablesession``). The body must say ``{"confirm": true}``:
an erasure deletes every session of that customer and cannot be undone.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from durable_sessions import service
from durable_sessions.api.base import SessionView, validated
from durable_sessions.api.permissions import OperatorOnly, SessionAccess
from durable_sessions.api.schema import document, error_responses
from durable_sessions.api.serializers import BodySerializer

ERASE_PERMISSION = "durable_sessions.delete_durablesession"


class CanErase(BasePermission):
    """The caller holds the sessions' delete permission (after :class:`OperatorOnly`)."""

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        if not request.user.has_perm(ERASE_PERMISSION):
            raise PermissionDenied(f"erasing a customer needs the {ERASE_PERMISSION} permission")
        return True


class EraseSerializer(BodySerializer):
    confirm = serializers.BooleanField(help_text="Must be true: an erasure cannot be undone.")

    def validate_confirm(self, value: bool) -> bool:
        if value is not True:
            raise serializers.ValidationError("must be true to erase")
        return value


class ErasureResultSerializer(serializers.Serializer):
    sessions = serializers.IntegerField(help_text="How many sessions were deleted.")
    counts = serializers.DictField(
        child=serializers.IntegerField(), help_text="Rows deleted per model."
    )
    record = serializers.IntegerField(help_text="The id of the audit record.")


class EraseCustomerView(SessionView):
    """Delete every session of this session's customer, and everything linked to them."""

    http_method_names = ["post", "options"]
    permission_classes = [SessionAccess, OperatorOnly, CanErase]

    @document(
        operation_id="sessions_erase_customer",
        tags=["sessions"],
        summary="Erase the customer's data",
        description="For operators with the delete permission. Deletes every session of "
        "this session's customer (open ones too) with messages, events, runs, handoff "
        "records, device links, notes and read marks; their live connections close with "
        "4410. Leaves an audit record that counts the rows and keeps no personal data.",
        request=EraseSerializer,
        responses={200: ErasureResultSerializer, **error_responses(400, 403, 404, 415)},
    )
    def post(self, request: Request, session_id: str) -> Response:
        validated(EraseSerializer, request.data)
        record = service.erase_session_customer(self.session.pk, actor=request.user, via="api")
        return Response({"sessions": record.sessions, "counts": record.counts, "record": record.pk})
