"""Handoff and lifecycle actions: each one a call to the session service.

The customer asks for a human; operators take over, hand back, transfer and close; both
may stop the AI's current reply. The rules (and the 409s) are the service's.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework.request import Request
from rest_framework.response import Response

from durable_sessions import service, wire
from durable_sessions.adapter import Access
from durable_sessions.api.base import SessionView, validated
from durable_sessions.api.permissions import OperatorOnly, OwnerOnly, SessionAccess
from durable_sessions.api.schema import document, error_responses
from durable_sessions.api.serializers import (
    ActionResultSerializer,
    CancelResultSerializer,
    ReasonSerializer,
    TransferSerializer,
)
from durable_sessions.errors import InvalidInput
from durable_sessions.models import DurableSession, ParticipantKind

ACTION_ERRORS = error_responses(400, 403, 404, 409, 415)


def action_schema(operation_id: str, summary: str, description: str, **kwargs: Any) -> Any:
    """The schema of an action: a reason in, the session out, the usual refusals."""
    return document(
        operation_id=operation_id,
        tags=["handoff"],
        summary=summary,
        description=description,
        request=kwargs.pop("request", ReasonSerializer),
        responses={200: kwargs.pop("response", ActionResultSerializer), **ACTION_ERRORS},
        **kwargs,
    )


class ActionView(SessionView):
    """A POST that changes the session and answers with its new state."""

    http_method_names = ["post", "options"]

    def result(self, changed: bool) -> Response:
        session = DurableSession.objects.get(pk=self.session.pk)
        return Response({"changed": changed, "session": wire.session_data(session)})


class HandoffRequestView(ActionView):
    """The customer asks for a human."""

    permission_classes = [SessionAccess, OwnerOnly]

    @action_schema(
        "handoff_request",
        "Ask for a human",
        "For the session's customer. The AI stops (its reply is kept, marked cancelled) and "
        "the session waits in the operators' queue. `changed` is false when it already "
        "waits for, or is held by, a human.",
    )
    def post(self, request: Request, session_id: str) -> Response:
        body = validated(ReasonSerializer, request.data)
        customer = service.participant_for(self.session.pk, ParticipantKind.CUSTOMER)
        changed = service.request_handoff(self.session.pk, by=customer, reason=body["reason"])
        return self.result(changed)


class TakeOverView(ActionView):
    """An operator claims the session."""

    permission_classes = [SessionAccess, OperatorOnly]

    @action_schema(
        "handoff_take_over",
        "Take over",
        "For operators. Claims the session from the AI or the queue; the AI's reply stops at "
        "once. Of two operators claiming at once exactly one wins; the other gets 409.",
    )
    def post(self, request: Request, session_id: str) -> Response:
        body = validated(ReasonSerializer, request.data)
        service.take_over(self.session.pk, request.user, reason=body["reason"])
        return self.result(True)


class HandBackView(ActionView):
    """The operator holding the session returns it to the AI."""

    permission_classes = [SessionAccess, OperatorOnly]

    @action_schema(
        "handoff_hand_back",
        "Hand back to the AI",
        "For the operator holding the session (anyone else gets 409).",
    )
    def post(self, request: Request, session_id: str) -> Response:
        body = validated(ReasonSerializer, request.data)
        service.hand_back(self.session.pk, request.user, reason=body["reason"])
        return self.result(True)


class TransferView(ActionView):
    """The operator holding the session passes it to another operator."""

    permission_classes = [SessionAccess, OperatorOnly]

    @action_schema(
        "handoff_transfer",
        "Transfer to another operator",
        "For the operator holding the session; `to` is the user id of another active operator.",
        request=TransferSerializer,
    )
    def post(self, request: Request, session_id: str) -> Response:
        body = validated(TransferSerializer, request.data)
        target = get_user_model().objects.filter(pk=body["to"], is_active=True).first()
        if target is None:
            raise InvalidInput("to", "must be an active operator")
        service.transfer(self.session.pk, request.user, target, reason=body["reason"])
        return self.result(True)


class CloseView(ActionView):
    """An operator closes the session."""

    permission_classes = [SessionAccess, OperatorOnly]

    @action_schema(
        "sessions_close",
        "Close",
        "For operators. Stops any AI reply and closes the session; `changed` is false when "
        "it was already closed. A session held by another operator gets 409, as in the "
        "console.",
    )
    def post(self, request: Request, session_id: str) -> Response:
        body = validated(ReasonSerializer, request.data)
        changed = service.close_by_operator(self.session.pk, request.user, reason=body["reason"])
        return self.result(changed)


class CancelReplyView(SessionView):
    """Stop the AI's current reply, keeping its text."""

    http_method_names = ["post", "options"]

    @document(
        operation_id="messages_cancel_reply",
        tags=["messages"],
        summary="Stop the AI's reply",
        description="For the customer and operators. The streaming reply keeps its text and "
        "is marked cancelled; `cancelled` is 0 when the AI was not writing.",
        request=None,
        responses={200: CancelResultSerializer, **error_responses(403, 404)},
    )
    def post(self, request: Request, session_id: str) -> Response:
        reason = "user" if self.access is Access.OWNER else "operator"
        return Response({"cancelled": len(service.cancel_reply(self.session.pk, reason=reason))})
