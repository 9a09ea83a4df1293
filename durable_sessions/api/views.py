"""Sessions, messages and the event log over HTTP."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.middleware.csrf import get_token
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from durable_sessions import service, wire
from durable_sessions.adapter import Access, get_adapter, visitor_id
from durable_sessions.api.authentication import is_token_request, request_visitor
from durable_sessions.api.base import ApiView, SessionView, posted, validated
from durable_sessions.api.longpoll import long_poll
from durable_sessions.api.schema import document, error_responses
from durable_sessions.api.serializers import (
    EventListQuery,
    EventPageSerializer,
    MessageCreateSerializer,
    MessageListQuery,
    MessagePageSerializer,
    PostedMessageSerializer,
    SessionCreateSerializer,
    SessionDetailSerializer,
    SessionListQuery,
    SessionPageSerializer,
    SessionSerializer,
)
from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery import limits
from durable_sessions.delivery.replay import read_events_page
from durable_sessions.errors import InvalidInput
from durable_sessions.models import DurableSession, Message, ParticipantKind
from durable_sessions.service import runs
from durable_sessions.service.branches import version_numbers
from durable_sessions.service.chats import chat_id_of
from durable_sessions.service.text import with_streaming_text

IDEMPOTENCY_HEADER = "Idempotency-Key"


def visible_sessions(request: Request) -> QuerySet[DurableSession]:
    """Every session for an operator; otherwise those the caller owns (user or visitor)."""
    user = request.user
    if get_adapter().is_operator(user):
        return DurableSession.objects.all()
    return DurableSession.objects.owned_by(user, request_visitor(request))


class SessionListView(ApiView):
    """The caller's sessions (every session, for operators); create a session."""

    @document(
        operation_id="sessions_list",
        tags=["sessions"],
        summary="List sessions",
        description="The caller's own sessions, newest activity first; operators see every "
        "session. A cookie client also receives the `csrftoken` cookie here.",
        parameters=[SessionListQuery],
        responses={200: SessionPageSerializer, **error_responses(400)},
    )
    def get(self, request: Request) -> Response:
        query = validated(SessionListQuery, request.query_params)
        sessions = visible_sessions(request)
        for name in ("control", "status"):
            if name in query:
                sessions = sessions.filter(**{name: query[name]})
        if query.get("assigned") == "me":
            mine = request.user.pk if request.user.is_authenticated else None
            sessions = sessions.filter(assigned_operator_id=mine) if mine else sessions.none()
        elif query.get("assigned") == "none":
            sessions = sessions.filter(assigned_operator__isnull=True)
        sessions = sessions.order_by("-updated_at", "-id")
        limit, offset = query["limit"], query["offset"]
        count = sessions.count()
        page = list(sessions[offset : offset + limit])
        if not is_token_request(request):
            # Lets a cookie client (e.g. an anonymous visitor) send its first POST.
            get_token(request._request)
        following = offset + limit < count
        return Response(
            {
                "count": count,
                "next": self._page_url(request, offset + limit, limit) if following else None,
                "previous": self._page_url(request, max(offset - limit, 0), limit)
                if offset
                else None,
                "results": [wire.session_data(s) for s in page],
            }
        )

    @staticmethod
    def _page_url(request: Request, offset: int, limit: int) -> str:
        url = replace_query_param(request.build_absolute_uri(), "limit", limit)
        if offset == 0:
            return remove_query_param(url, "offset")
        return replace_query_param(url, "offset", offset)

    @document(
        operation_id="sessions_create",
        tags=["sessions"],
        summary="Create a session",
        description="The caller becomes its owner: the user, or else an anonymous visitor, "
        "whose id is created in their Django session.",
        request=SessionCreateSerializer,
        responses={201: SessionSerializer, **error_responses(400, 401, 403, 415)},
    )
    def post(self, request: Request) -> Response:
        body = validated(SessionCreateSerializer, request.data)
        limits.check("session", limits.request_who(request))  # per visitor, user and IP
        user = request.user if request.user.is_authenticated else None
        visitor = "" if user else visitor_id(request._request.session, create=True)
        session = service.create_session(owner=user, visitor=visitor or "", title=body["title"])
        return Response(wire.session_data(session), status=status.HTTP_201_CREATED)


class SessionDetailView(SessionView):
    """One session."""

    @document(
        operation_id="sessions_retrieve",
        tags=["sessions"],
        summary="Read a session",
        responses={200: SessionDetailSerializer, **error_responses(404)},
    )
    def get(self, request: Request, session_id: str) -> Response:
        run = runs.latest_run(self.session.pk)
        if run is not None:
            run["created_at"] = wire.iso(run["created_at"])
            run["finished_at"] = wire.iso(run["finished_at"])
        agent = runs.agent_status(self.session.pk)
        return Response(
            {
                **wire.session_data(self.session),
                "agent_status": agent,
                "run": run,
                "chat_id": chat_id_of(self.session.pk),
            }
        )


def listed_message(message: Message, number: tuple[int, int]) -> dict[str, Any]:
    """A message as the transcript lists it: its version and branch besides the rest."""
    version, versions = number
    return {
        **wire.message_data(message),
        "version": version,
        "versions": versions,
        "hidden_under": message.hidden_under_id,
    }


class MessageListView(SessionView):
    """The transcript of a session, page by page; post a message."""

    @document(
        operation_id="messages_list",
        tags=["messages"],
        summary="List messages",
        description="Messages in order of their seq, after `after_seq`: the shown branch "
        "(what the page shows), or with `versions=all` every version of edited and "
        "regenerated messages too; each says which version it is and on which branch. A "
        "streaming reply shows the text it has so far.",
        parameters=[MessageListQuery],
        responses={200: MessagePageSerializer, **error_responses(400, 404)},
    )
    def get(self, request: Request, session_id: str) -> Response:
        query = validated(MessageListQuery, request.query_params)
        limit = query["limit"]
        listed = Message.objects.filter(session=self.session, seq__gt=query["after_seq"])
        if query["versions"] == "active":
            listed = listed.filter(hidden_under__isnull=True)
        rows = list(
            listed.select_related("author")
            .prefetch_related(wire.parts_prefetch())
            .order_by("seq")[: limit + 1]
        )
        more = len(rows) > limit
        rows = rows[:limit]
        with_streaming_text(rows)
        numbers = version_numbers(rows)
        return Response(
            {
                "messages": [listed_message(m, numbers[m.pk]) for m in rows],
                "next_after_seq": rows[-1].seq if more else None,
            }
        )

    @document(
        operation_id="messages_create",
        tags=["messages"],
        summary="Post a message",
        description="The owner posts as the customer; an operator replies as themself, "
        "taking the session over from the AI or the queue if needed. With a `client_id` "
        "(or an `Idempotency-Key` header) a retry returns the stored message with status "
        "200 and `duplicate: true`; the same id with other content is a 409. While the "
        "agent answers, the customer's `mode` says whether the message waits (`queue`), "
        "steers the answer being written (`steer`) or interrupts it (`interrupt`); the "
        "response's `mode` says which applied.",
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                str,
                OpenApiParameter.HEADER,
                description="Same as `client_id` in the body.",
            )
        ],
        request=MessageCreateSerializer,
        responses={
            201: PostedMessageSerializer,
            200: OpenApiResponse(PostedMessageSerializer, description="A retry: stored before."),
            **error_responses(400, 403, 404, 409, 415),
        },
    )
    def post(self, request: Request, session_id: str) -> Response:
        body = validated(MessageCreateSerializer, request.data)
        client_id = self._client_id(request, body["client_id"])
        limits.check("message", limits.request_who(request))  # shared with the websocket
        if self.access is Access.OWNER:
            author = service.participant_for(self.session.pk, ParticipantKind.CUSTOMER)
            result = service.post_message(
                self.session.pk,
                author=author,
                content=body["content"],
                client_id=client_id,
                mode=body["mode"],
            )
        else:
            if body["mode"] is not None:
                raise InvalidInput("mode", "only the customer's messages steer or interrupt")
            result = service.operator_reply(
                self.session.pk, operator=request.user, content=body["content"], client_id=client_id
            )
        return posted(result)

    @staticmethod
    def _client_id(request: Request, in_body: str | None) -> str | None:
        header = request.headers.get(IDEMPOTENCY_HEADER)
        if header is None:
            return in_body
        if in_body is not None and in_body != header:
            raise InvalidInput("client_id", f"differs from the {IDEMPOTENCY_HEADER} header")
        return header


class EventListView(SessionView):
    """The session's events after a seq: the catch-up for clients without a websocket.

    Served by an async view (:func:`.longpoll.long_poll`): with ``wait``, a request with
    nothing to return waits for the next committed event without holding a thread.
    """

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return long_poll(super().as_view(**initkwargs))

    @document(
        operation_id="events_list",
        tags=["events"],
        summary="Events after a seq (long poll)",
        description="The committed events with `seq > after_seq`, oldest first, in the "
        "websocket's envelope: at most `limit` events, and fewer when they would exceed "
        "`REPLAY_PAGE_BYTES` characters (always at least one). `more` is true when more "
        "follow: ask again with `after_seq` "
        "set to the last seq. With `wait`, an empty answer is delayed until an event is "
        "committed or `wait` seconds have passed.",
        parameters=[EventListQuery],
        responses={200: EventPageSerializer, **error_responses(400, 404)},
    )
    def get(self, request: Request, session_id: str) -> Response:
        query = validated(EventListQuery, request.query_params)
        # At most ``limit`` events and about REPLAY_PAGE_BYTES of them: a long
        # conversation comes in several answers (``more``), never in one huge one.
        frames, more = read_events_page(
            self.session.pk,
            query["after_seq"],
            limit=query["limit"],
            max_chars=ds_settings.REPLAY_PAGE_BYTES,
        )
        response = Response(
            {"session": wire.session_data(self.session), "events": frames, "more": more}
        )
        if not frames and query["wait"] > 0:
            # Tells long_poll to wait for an event after this seq, then to ask again.
            response.poll_after = query["after_seq"]  # type: ignore[attr-defined]
        return response
