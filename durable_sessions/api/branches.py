"""Edit, regenerate and switch branches over HTTP: each one a call to the session service.

For the session's customer only; the rules (and the 409s: ``not_editable``,
``human_in_control``) are the service's (see ``durable_sessions.service.branches``).
"""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from durable_sessions import service
from durable_sessions.api.base import SessionView, posted, validated
from durable_sessions.api.permissions import OwnerOnly, SessionAccess
from durable_sessions.api.schema import document, error_responses
from durable_sessions.api.serializers import (
    BodySerializer,
    PostedMessageSerializer,
    StrictCharField,
)
from durable_sessions.delivery import limits

BRANCH_ERRORS = error_responses(400, 403, 404, 409, 415)


class EditSerializer(BodySerializer):
    content = StrictCharField(help_text="The new text of the message (plain text).")
    client_id = StrictCharField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Chosen by the client; a retry with the same id stores nothing more.",
    )


class RegenerateResultSerializer(serializers.Serializer):
    hidden = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="The messages now off the shown branch: the answer and what followed it.",
    )


class SwitchResultSerializer(serializers.Serializer):
    changed = serializers.BooleanField(help_text="False when that version was shown already.")


class BranchView(SessionView):
    """A POST by the session's customer on one message."""

    http_method_names = ["post", "options"]
    permission_classes = [SessionAccess, OwnerOnly]


class EditView(BranchView):
    @document(
        operation_id="messages_edit",
        tags=["messages"],
        summary="Edit a message",
        description="Adds a new version of one of the customer's messages; the old version "
        "and everything after it stay (off the shown branch: `branch.switched`), and the "
        "agent answers the new one. Refused with 409 `not_editable` for other messages "
        "(an operator's, a notice, an answer) and after an operator wrote, and with 409 "
        "`human_in_control` while a human has the conversation.",
        request=EditSerializer,
        responses={
            201: PostedMessageSerializer,
            200: PostedMessageSerializer,
            **BRANCH_ERRORS,
        },
    )
    def post(self, request: Request, session_id: str, message_id: int) -> Response:
        body = validated(EditSerializer, request.data)
        limits.check("message", limits.request_who(request))  # an edit is a message
        result = service.edit_message(
            self.session.pk, message_id, body["content"], client_id=body["client_id"]
        )
        return posted(result)


class RegenerateView(BranchView):
    @document(
        operation_id="messages_regenerate",
        tags=["messages"],
        summary="Regenerate an answer",
        description="Hides one of the agent's answers (kept, with what followed it) and "
        "starts a run that writes a new version of it. Same refusals as an edit.",
        request=None,
        responses={200: RegenerateResultSerializer, **BRANCH_ERRORS},
    )
    def post(self, request: Request, session_id: str, message_id: int) -> Response:
        limits.check("message", limits.request_who(request))  # it starts a run
        return Response({"hidden": service.regenerate(self.session.pk, message_id)})


class ActivateView(BranchView):
    @document(
        operation_id="messages_activate",
        tags=["messages"],
        summary="Show a version's branch",
        description="Shows the branch of this version of a message instead of its shown "
        "sibling (`branch.switched`); a shown branch that ends with a customer's message "
        "is answered. `changed` is false when it was shown already.",
        request=None,
        responses={200: SwitchResultSerializer, **BRANCH_ERRORS},
    )
    def post(self, request: Request, session_id: str, message_id: int) -> Response:
        return Response({"changed": service.switch_branch(self.session.pk, message_id)})
