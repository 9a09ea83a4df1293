"""Device links over HTTP: the customer makes, lists and revokes them; a browser opens one.

A link opens one session on one more browser (see ``durable_sessions.service.devices``).
Only the session's own customer manages its links: operators, and browsers that hold a
grant themselves, get 403.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from durable_sessions import service, wire
from durable_sessions.adapter import get_adapter, visitor_id
from durable_sessions.api.authentication import is_token_request, request_visitor
from durable_sessions.api.base import ApiView, SessionView, validated
from durable_sessions.api.permissions import SessionAccess
from durable_sessions.api.schema import document, error_responses
from durable_sessions.api.serializers import BodySerializer, ErrorSerializer, SessionSerializer
from durable_sessions.app_settings import ds_settings
from durable_sessions.models import DeviceGrant

GONE = OpenApiResponse(
    ErrorSerializer,
    description="`link_unavailable`: the link is unknown, already opened by another browser, "
    "expired, revoked, or its conversation is closed.",
)


class DeviceGrantSerializer(serializers.Serializer):
    """A device link as its customer sees it (never its token, which is not stored)."""

    id = serializers.IntegerField()
    state = serializers.ChoiceField(choices=["pending", "active", "expired", "revoked"])
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(help_text="The link cannot be opened after this.")
    redeemed_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)


class NewDeviceGrantSerializer(DeviceGrantSerializer):
    token = serializers.CharField(help_text="Shown once: only its hash is stored.")
    url = serializers.CharField(
        allow_null=True, help_text="The host's page that opens the link (`DEVICE_LINK_URL`)."
    )


class DeviceGrantListSerializer(serializers.Serializer):
    devices = DeviceGrantSerializer(many=True)


class RedeemSerializer(BodySerializer):
    token = serializers.CharField(max_length=service.devices.MAX_TOKEN_CHARS)


class EmptyBodySerializer(BodySerializer):
    """No field: the body is ``{}`` (or empty)."""


def grant_data(grant: DeviceGrant) -> dict[str, Any]:
    return {
        "id": grant.pk,
        "state": grant.state,
        "created_at": wire.iso(grant.created_at),
        "expires_at": wire.iso(grant.expires_at),
        "redeemed_at": wire.iso(grant.redeemed_at),
        "revoked_at": wire.iso(grant.revoked_at),
    }


class SessionOwnerOnly(BasePermission):
    """The session's own customer: not an operator, not a browser holding a device grant."""

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        if not get_adapter().owns(obj, request.user, request_visitor(request)):
            raise PermissionDenied("device links are managed by the conversation's customer")
        return True


class DeviceGrantListView(SessionView):
    """The session's device links; make a new one."""

    permission_classes = [SessionAccess, SessionOwnerOnly]

    @document(
        operation_id="devices_list",
        tags=["devices"],
        summary="List device links",
        description="For the session's customer: every link made for the session, newest "
        "first, with its state (`pending`: not opened yet; `active`: a device uses it; "
        "`expired`: never opened in time; `revoked`).",
        responses={200: DeviceGrantListSerializer, **error_responses(403, 404)},
    )
    def get(self, request: Request, session_id: str) -> Response:
        grants = service.devices.device_grants(self.session.pk)
        return Response({"devices": [grant_data(g) for g in grants]})

    @document(
        operation_id="devices_create",
        tags=["devices"],
        summary="Make a device link",
        description="For the customer of an anonymous session. The link opens this one "
        "session, once, on one more browser, within `DEVICE_LINK_TTL` seconds; that browser "
        "keeps its own identity and gains this session only, until the link is revoked or "
        "the session closes. 409 when the session is closed, belongs to an account (log in "
        "there instead), or has `DEVICE_GRANTS_PER_SESSION` links in use or pending.",
        request=EmptyBodySerializer,
        responses={201: NewDeviceGrantSerializer, **error_responses(400, 403, 404, 409, 415)},
    )
    def post(self, request: Request, session_id: str) -> Response:
        validated(EmptyBodySerializer, request.data or {})
        made = service.devices.create_device_grant(self.session.pk)
        url = None
        if ds_settings.DEVICE_LINK_URL:
            url = request.build_absolute_uri(
                ds_settings.DEVICE_LINK_URL.replace("{token}", made.token)
            )
        body = {**grant_data(made.grant), "token": made.token, "url": url}
        return Response(body, status=status.HTTP_201_CREATED)


class DeviceGrantDetailView(SessionView):
    """Revoke one device link of the session."""

    permission_classes = [SessionAccess, SessionOwnerOnly]
    http_method_names = ["delete", "options"]

    @document(
        operation_id="devices_revoke",
        tags=["devices"],
        summary="Revoke a device link",
        description="For the session's customer. The device that opened it loses access at "
        "once (an open websocket of that device is refused at its next connect); an unopened "
        "link can no longer be opened. Revoking twice is harmless.",
        request=None,
        responses={200: DeviceGrantSerializer, **error_responses(403, 404)},
    )
    def delete(self, request: Request, session_id: str, grant_id: int) -> Response:
        grant = service.devices.revoke_device_grant(self.session.pk, grant_id)
        return Response(grant_data(grant))


class DeviceRedeemView(ApiView):
    """Open a device link in this browser."""

    @document(
        operation_id="devices_redeem",
        tags=["devices"],
        summary="Open a device link",
        description="For a browser (session cookie and CSRF header; not a token): binds the "
        "link to this browser's own visitor id, which is created if it has none. The "
        "browser gains the link's session only; its own sessions stay its own. A link "
        "opens once: another browser gets 410.",
        request=RedeemSerializer,
        responses={200: SessionSerializer, 410: GONE, **error_responses(400, 403, 415)},
    )
    def post(self, request: Request) -> Response:
        body = validated(RedeemSerializer, request.data)
        if is_token_request(request):
            raise PermissionDenied("a device link is opened by a browser, with its cookie")
        found = service.devices.find_device_grant(body["token"])
        visitor = visitor_id(request._request.session, create=True) or ""
        if get_adapter().owns(found.session, request.user, visitor):
            # The customer opening their own link: nothing to grant, and the link stays unused.
            return Response(wire.session_data(found.session))
        grant = service.devices.redeem_device_grant(body["token"], visitor)
        return Response(wire.session_data(grant.session))
