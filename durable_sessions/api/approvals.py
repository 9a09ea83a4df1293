"""Answering a tool call's approval over HTTP: the same service call as the websocket's
``approval.answer`` frame."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response

from durable_sessions import service, wire
from durable_sessions.adapter import Access
from durable_sessions.api.base import SessionView, validated
from durable_sessions.api.schema import document, error_responses
from durable_sessions.api.serializers import ApprovalAnswerSerializer, ApprovalResultSerializer


class ApprovalAnswerView(SessionView):
    """Approve or deny a tool call that waits for a person."""

    http_method_names = ["post", "options"]

    @document(
        operation_id="approvals_answer",
        tags=["messages"],
        summary="Approve or deny a tool call",
        description="For the customer or an operator, as the call's `approval.approvers` "
        "allow (403 `not_allowed` otherwise). The first answer decides and the agent's run "
        "goes on; a retry with the same `client_id` gets the stored answer "
        "(`duplicate: true`), any other later answer 409 `already_answered` - also after "
        "the request expired or a human took over.",
        request=ApprovalAnswerSerializer,
        responses={200: ApprovalResultSerializer, **error_responses(400, 403, 404, 409, 415)},
    )
    def post(self, request: Request, session_id: str, approval_id: str) -> Response:
        body = validated(ApprovalAnswerSerializer, request.data)
        result = service.answer_approval(
            self.session.pk,
            approval_id,
            approved=body["approved"],
            operator=request.user if self.access is Access.OPERATOR else None,
            reason=body["reason"],
            client_id=body["client_id"],
        )
        return Response(
            {
                "seq": result.seq,
                "duplicate": result.duplicate,
                "message_id": result.part.message_id,
                "part": wire.part_data(result.part),
            }
        )
