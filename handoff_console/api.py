"""The console's own API endpoints: operators' private notes about a session, and its brief.

Everything else the console does (take over, reply, hand back, transfer, close) is an
endpoint of :mod:`durable_sessions.api`. Notes are the console's data, so this view lives
here, on the same base class: the same authentication (CSRF on every cookie-authenticated
write), object permissions, error shape and OpenAPI schema.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from durable_sessions.api.base import ApiView, SessionView, validated
from durable_sessions.api.permissions import OperatorOnly, SessionAccess
from durable_sessions.api.schema import document, error_responses
from durable_sessions.api.serializers import BodySerializer, StrictCharField, StrictIntegerField
from handoff_console.brief import brief
from handoff_console.canned import replies_for, reply_data, save_reply
from handoff_console.notes import add_note, note_data, notes_for
from handoff_console.permissions import is_operator
from handoff_console.reading import mark_read


class NoteCreateSerializer(BodySerializer):
    text = StrictCharField(
        allow_blank=True,  # refused by add_note, with the same error as whitespace
        help_text="Plain text, not blank, at most `HANDOFF_CONSOLE['MAX_NOTE_CHARS']`.",
    )


class NoteAuthorSerializer(serializers.Serializer):
    id = serializers.IntegerField(allow_null=True, help_text="Null once the user is deleted.")
    name = serializers.CharField()


class NoteSerializer(serializers.Serializer):
    """A private note: only operators ever see it."""

    id = serializers.IntegerField()
    session_id = serializers.UUIDField()
    author = NoteAuthorSerializer()
    text = serializers.CharField()
    created_at = serializers.DateTimeField()


class NoteListSerializer(serializers.Serializer):
    notes = NoteSerializer(many=True)


class NotesView(SessionView):
    """A session's private notes, for operators."""

    permission_classes = [SessionAccess, OperatorOnly]

    @document(
        operation_id="notes_list",
        tags=["notes"],
        summary="List private notes",
        description="For operators (the console's `handoff_console` app). Oldest first.",
        responses={200: NoteListSerializer, **error_responses(403, 404)},
    )
    def get(self, request: Request, session_id: str) -> Response:
        return Response({"notes": notes_for(self.session.pk)})

    @document(
        operation_id="notes_create",
        tags=["notes"],
        summary="Add a private note",
        description="For operators. Stored by the console, never an event of the session: "
        "the customer never sees it. Operators viewing the session get a `note.created` "
        "frame on their websocket.",
        request=NoteCreateSerializer,
        responses={201: NoteSerializer, **error_responses(400, 403, 404, 415)},
    )
    def post(self, request: Request, session_id: str) -> Response:
        body = validated(NoteCreateSerializer, request.data)
        note = add_note(self.session.pk, author=request.user, text=body["text"])
        return Response(note_data(note), status=status.HTTP_201_CREATED)


class BriefHandoffSerializer(serializers.Serializer):
    control = serializers.ChoiceField(choices=["queued", "human"])
    reason = serializers.CharField(allow_blank=True)
    summary = serializers.CharField(allow_blank=True)
    by = serializers.CharField(allow_blank=True, help_text="Who made the change, if anyone.")
    by_kind = serializers.CharField(allow_blank=True)
    at = serializers.DateTimeField()
    seq = serializers.IntegerField()


class BriefQuoteSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    text = serializers.CharField()
    at = serializers.DateTimeField()


class BriefAiSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    content = serializers.CharField()
    state = serializers.CharField()
    at = serializers.DateTimeField()


class BriefSerializer(serializers.Serializer):
    """Why a human has the session now, and what to read before answering."""

    handoff = BriefHandoffSerializer(allow_null=True, help_text="Null while the AI has it.")
    summary_from = serializers.ChoiceField(choices=["agent", "customer"])
    customer_last = BriefQuoteSerializer(many=True)
    ai_last = BriefAiSerializer(allow_null=True)


class BriefView(SessionView):
    """A session's handoff brief, for operators."""

    permission_classes = [SessionAccess, OperatorOnly]

    @document(
        operation_id="brief_read",
        tags=["brief"],
        summary="Read the handoff brief",
        description="For operators. The current reason a human has the session (the latest "
        "handoff, take over or transfer), the agent's summary or else the customer's latest "
        "messages, and the AI's latest reply.",
        responses={200: BriefSerializer, **error_responses(403, 404)},
    )
    def get(self, request: Request, session_id: str) -> Response:
        return Response(brief(self.session.pk))


class ReadSerializer(BodySerializer):
    seq = StrictIntegerField(min_value=0, help_text="The last seq of the log the page shows.")


class ReadMarkSerializer(serializers.Serializer):
    seq = serializers.IntegerField(help_text="The mark now stored (it never moves back).")


class ReadView(SessionView):
    """How far the operator has read a session: the unread counts of the queue."""

    permission_classes = [SessionAccess, OperatorOnly]

    @document(
        operation_id="read_mark",
        tags=["brief"],
        summary="Mark the session read up to a seq",
        description="For operators. The mark only moves forward and never past the log; "
        "the queue's rows count the customer's messages after it as unread.",
        request=ReadSerializer,
        responses={200: ReadMarkSerializer, **error_responses(400, 403, 404, 415)},
    )
    def post(self, request: Request, session_id: str) -> Response:
        body = validated(ReadSerializer, request.data)
        return Response({"seq": mark_read(self.session, request.user, body["seq"])})


class IsOperator(BasePermission):
    """Any operator (an endpoint of no one session)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not is_operator(request.user):
            raise PermissionDenied("this endpoint is for operators")
        return True


class CannedReplyCreateSerializer(BodySerializer):
    shortcut = StrictCharField(help_text="1-40 of a-z, 0-9, - and _; typed after `/`.")
    text = StrictCharField(
        allow_blank=True,
        help_text="Plain text; may use {customer_name}, {operator_name}, {conversation_title}.",
    )
    shared = serializers.BooleanField(default=False, help_text="Shared with every operator.")


class CannedReplySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    shortcut = serializers.CharField()
    text = serializers.CharField()
    shared = serializers.BooleanField()


class CannedReplyListSerializer(serializers.Serializer):
    replies = CannedReplySerializer(many=True)


class CannedRepliesView(ApiView):
    """Canned replies: the shared ones and the operator's own."""

    permission_classes = [IsOperator]

    @document(
        operation_id="canned_replies_list",
        tags=["canned replies"],
        summary="List canned replies",
        description="For operators: the shared replies and their own, by shortcut.",
        responses={200: CannedReplyListSerializer, **error_responses(403)},
    )
    def get(self, request: Request) -> Response:
        return Response({"replies": replies_for(request.user)})

    @document(
        operation_id="canned_replies_create",
        tags=["canned replies"],
        summary="Save a canned reply",
        description="For operators. A shortcut is unique among the shared replies, and "
        "among each operator's own.",
        request=CannedReplyCreateSerializer,
        responses={201: CannedReplySerializer, **error_responses(400, 403, 415)},
    )
    def post(self, request: Request) -> Response:
        body = validated(CannedReplyCreateSerializer, request.data)
        reply = save_reply(owner=request.user, **body)
        return Response(reply_data(reply), status=status.HTTP_201_CREATED)
