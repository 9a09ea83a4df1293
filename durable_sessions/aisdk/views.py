"""The AI SDK endpoints: ``POST chat``, ``GET chat/<id>/stream``, ``POST chat/<id>/cancel``.

Each view authenticates, authorizes and writes like the REST API (DRF, the app's
authenticators with CSRF on cookie requests, its limits and error shape), through the
session service only; the answer is then read from the log by :mod:`.follow`. The
response never drives the run: a client that drops it changes nothing, and only the
cancel endpoint stops an answer.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.http import HttpResponse, StreamingHttpResponse
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from durable_sessions import service, wire
from durable_sessions.adapter import Access, get_adapter, visitor_id
from durable_sessions.aisdk.chunks import AnswerChunks, Chunk
from durable_sessions.aisdk.edits import edit_client_id, shown_version
from durable_sessions.aisdk.follow import active_answer_start, answer_active, follow
from durable_sessions.aisdk.requests import ChatRequest, parse_chat_request
from durable_sessions.api.authentication import request_visitor
from durable_sessions.api.base import ApiView
from durable_sessions.api.permissions import NOT_FOUND
from durable_sessions.delivery import limits
from durable_sessions.errors import InvalidInput
from durable_sessions.models import DurableSession, Event, Message, MessagePart, Role
from durable_sessions.service.chats import clean_chat_id, find_chat, open_chat

STREAM_HEADER = "x-vercel-ai-ui-message-stream"


def stream_response(
    session_id: uuid.UUID, after: int, chunks: AnswerChunks, opening: list[Chunk] | None = None
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        follow(session_id, after, chunks, opening), content_type="text/event-stream"
    )
    response[STREAM_HEADER] = "v1"
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies pass each chunk on at once
    return response


def wants_approval_chunks(request: Request) -> bool:
    """ai 5 refuses chunks it does not know: ``?sdk=5`` leaves out the approval chunks."""
    return request.query_params.get("sdk") != "5"


class ChatAccessMixin:
    """The chat's session, when the caller may use it (404 otherwise, like the REST API)."""

    def chat_session(self, request: Request, chat_id: Any) -> tuple[DurableSession, Access]:
        try:
            chat_id = clean_chat_id(chat_id)
        except InvalidInput:
            raise NotFound(NOT_FOUND) from None
        session = find_chat(chat_id)
        access = self.access_to(request, session) if session is not None else None
        if session is None or access is None:
            raise NotFound(NOT_FOUND)
        return session, access

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # Answers are event streams whatever the client accepts (an EventSource asks for
        # text/event-stream only); errors are JSON. Never a 406.
        return super().perform_content_negotiation(request, force=True)  # type: ignore[misc]

    @staticmethod
    def access_to(request: Request, session: DurableSession) -> Access | None:
        return get_adapter().access(session, request.user, request_visitor(request))


class ChatView(ChatAccessMixin, ApiView):
    """POST: send the user's message (or regenerate an answer, or continue after answered
    approvals) and stream the answer."""

    in_api_schema = False  # an SSE endpoint: documented in docs/aisdk.md
    _access: Access | None = None  # the caller's access to the chat's session

    def post(self, request: Request) -> HttpResponse:
        body = parse_chat_request(request.data)
        # One transaction: a refusal after a chat's session was made leaves no session.
        with transaction.atomic():
            return self._post(request, body)

    def _post(self, request: Request, body: ChatRequest) -> HttpResponse:
        session = self._session(request, body)
        sdk5 = not wants_approval_chunks(request)
        chunks = AnswerChunks(approvals=not sdk5, session_id=str(session.pk))
        if body.trigger == "regenerate-message":
            return self._regenerate(request, session, body, chunks)
        if body.approvals:
            return self._continue(session, body, chunks)
        if body.message_id is not None and body.message_id == body.user_id:
            return self._edit(request, session, body, chunks)
        limits.check("message", limits.request_who(request))  # shared with the websocket
        if self._access is Access.OWNER:
            result = service.post_customer_message(session.pk, body.text, client_id=body.user_id)
        else:
            result = service.operator_reply(
                session.pk, operator=request.user, content=body.text, client_id=body.user_id
            )
        chunks.asked = result.message.pk
        return stream_response(session.pk, result.seq, chunks)

    def _session(self, request: Request, body: ChatRequest) -> DurableSession:
        found = find_chat(body.chat_id)
        if found is not None:
            access = self.access_to(request, found)
            if access is None:
                raise NotFound(NOT_FOUND)
            self._access = access
            return found
        if body.trigger == "regenerate-message" or body.approvals:
            raise NotFound(NOT_FOUND)  # a new chat has nothing to regenerate or approve
        limits.check("session", limits.request_who(request))  # per visitor, user and IP
        user = request.user if request.user.is_authenticated else None
        visitor = "" if user else visitor_id(request._request.session, create=True) or ""
        session, _ = open_chat(body.chat_id, owner=user, visitor=visitor, metadata=body.metadata)
        access = self.access_to(request, session)
        if access is None:  # a concurrent first post by somebody else won the chat id
            raise NotFound(NOT_FOUND)
        self._access = access
        return session

    def _edit(
        self, request: Request, session: DurableSession, body: ChatRequest, chunks: AnswerChunks
    ) -> HttpResponse:
        """The SDK's edit: a new version of the message through the edit service (the old
        one and what followed it kept, hidden), and the answer to the new version."""
        if self._access is not Access.OWNER:
            raise InvalidInput("messageId", "messages are edited by the chat's customer here")
        shown = shown_version(session.pk, body.message_id or "")
        if shown.content == body.text and shown.role == Role.USER:
            # A retried edit (or one that changes nothing): that version's answer again.
            chunks.asked = shown.pk
            return stream_response(session.pk, shown.seq, chunks)
        limits.check("message", limits.request_who(request))
        result = service.edit_message(
            session.pk, shown.pk, body.text, client_id=edit_client_id(shown, body.text)
        )
        chunks.asked = result.message.pk
        return stream_response(session.pk, result.seq, chunks)

    def _regenerate(
        self, request: Request, session: DurableSession, body: ChatRequest, chunks: AnswerChunks
    ) -> HttpResponse:
        if body.message_id is None:  # the SDK's regenerate() without an id: the last answer
            target = (
                Message.objects.filter(
                    session_id=session.pk, role=Role.ASSISTANT, hidden_under__isnull=True
                )
                .order_by("-seq")
                .values_list("pk", flat=True)
                .first()
            )
            if target is None:
                raise InvalidInput("messageId", "this chat has no answer to regenerate")
        else:
            try:
                target = int(body.message_id)
            except ValueError:
                raise InvalidInput("messageId", "is not the id of an answer in this chat") from None
        limits.check("message", limits.request_who(request))
        before = DurableSession.objects.filter(pk=session.pk).values_list("last_seq", flat=True)
        after = before.get()
        service.regenerate(session.pk, target)
        return stream_response(session.pk, after, chunks)

    def _continue(
        self, session: DurableSession, body: ChatRequest, chunks: AnswerChunks
    ) -> HttpResponse:
        """The client answered approvals in the answer it holds: record the answers and
        stream what the answer does next (the client keeps the parts it has)."""
        if self._access is not Access.OWNER:
            raise InvalidInput("messages", "approvals are answered by the chat's customer here")
        seqs: list[int] = []
        answered: dict[str, int] = {}
        reply_id = 0
        for answer in body.approvals:
            result = service.answer_approval(
                session.pk,
                answer.approval_id,
                approved=answer.approved,
                reason=answer.reason,
                client_id=f"aisdk-{answer.approval_id}",
            )
            reply_id = result.part.message_id
            answered[result.part.wire_id] = result.part.index
            seqs.append(result.seq if result.seq is not None else decision_seq(result.part))
        message = Message.objects.prefetch_related(wire.parts_prefetch()).get(pk=reply_id)
        # The client holds the parts up to the answered calls (a worker may have added
        # more since); the answered calls' outcomes are still to come.
        last_known = max(answered.values())
        known = [p for p in wire.message_parts(message) if p["index"] <= last_known]
        chunks.reply_id = reply_id
        opening = chunks.continue_after(known, pending=set(answered))
        return stream_response(session.pk, min(seqs) - 1, chunks, opening)


def decision_seq(part: MessagePart) -> int:
    """The seq of the event that recorded a call's decision (for a retried answer)."""
    seq = (
        Event.objects.filter(
            session_id=part.session_id,
            type=wire.TOOL_UPDATED,
            payload__part_id=part.wire_id,
            payload__state__in=["approved", "denied"],
        )
        .values_list("seq", flat=True)
        .first()
    )
    # Compacted: the decision is inside the answer's snapshot, which brings every part.
    return seq if seq is not None else part.message.seq + 1


class ChatStreamView(ChatAccessMixin, ApiView):
    """GET: the chat's active answer from its ``start``, then live; 204 when none."""

    in_api_schema = False

    def get(self, request: Request, chat_id: str) -> HttpResponse:
        session, _ = self.chat_session(request, chat_id)
        after = active_answer_start(session.pk)
        if after is None:
            return HttpResponse(status=204)
        chunks = AnswerChunks(approvals=wants_approval_chunks(request), session_id=str(session.pk))
        return stream_response(session.pk, after, chunks)


class ChatCancelView(ChatAccessMixin, ApiView):
    """POST: stop the chat's answer (the run and its reply), keeping what it wrote."""

    in_api_schema = False

    def post(self, request: Request, chat_id: str) -> Response:
        session, access = self.chat_session(request, chat_id)
        if access not in (Access.OWNER, Access.OPERATOR):
            raise NotFound(NOT_FOUND)
        # Whether there was an answer to stop (a run still thinking writes no event).
        active = answer_active(session.pk)
        seqs = service.cancel_reply(session.pk, reason="user")
        return Response({"cancelled": active, "seqs": seqs})
