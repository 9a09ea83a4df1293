"""The customer's rating of a closed conversation (CSAT): read by its owner and operators,
given once by its owner. The rules (closed first, once per session) are the service's."""

from __future__ import annotations

from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from durable_sessions import service, wire
from durable_sessions.adapter import Access
from durable_sessions.api.base import SessionView, validated
from durable_sessions.api.schema import document, error_responses
from durable_sessions.api.serializers import BodySerializer, StrictCharField, StrictIntegerField
from durable_sessions.models import ParticipantKind
from durable_sessions.service.rating import MAX_COMMENT_CHARS


class RateSerializer(BodySerializer):
    score = StrictIntegerField(min_value=1, max_value=5, help_text="1 (bad) to 5 (great).")
    comment = StrictCharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=MAX_COMMENT_CHARS,
        help_text=f"Optional, plain text, at most {MAX_COMMENT_CHARS} characters.",
    )


class RatingSerializer(serializers.Serializer):
    score = serializers.IntegerField()
    comment = serializers.CharField(allow_blank=True)
    seq = serializers.IntegerField(help_text="The seq of its `session.rated` event.")
    created_at = serializers.DateTimeField()


class RatingReadSerializer(serializers.Serializer):
    rating = RatingSerializer(allow_null=True, help_text="Null until the customer rated it.")


class RateResultSerializer(RatingReadSerializer):
    changed = serializers.BooleanField(help_text="False: this same rating was stored before.")


class RatingView(SessionView):
    """The session's rating (CSAT)."""

    @document(
        operation_id="rating_read",
        tags=["rating"],
        summary="Read the rating",
        description="For the session's customer and operators.",
        responses={200: RatingReadSerializer, **error_responses(403, 404)},
    )
    def get(self, request: Request, session_id: str) -> Response:
        rating = service.rating_of(self.session.pk)
        return Response({"rating": wire.rating_data(rating) if rating else None})

    @document(
        operation_id="rating_create",
        tags=["rating"],
        summary="Rate the closed conversation",
        description="For the session's customer, once it is closed (`409 conflict` before). "
        "Once per session: the same score and comment again answer `200` with `changed` "
        "false; a different rating is `409 conflict`. Adds a `session.rated` event.",
        request=RateSerializer,
        responses={
            201: RateResultSerializer,
            200: RateResultSerializer,
            **error_responses(400, 403, 404, 409, 415),
        },
    )
    def post(self, request: Request, session_id: str) -> Response:
        if self.access is not Access.OWNER:
            raise PermissionDenied("this action is for the session's customer")
        body = validated(RateSerializer, request.data)
        customer = service.participant_for(self.session.pk, ParticipantKind.CUSTOMER)
        result = service.rate_session(
            self.session.pk, by=customer, score=body["score"], comment=body["comment"]
        )
        return Response(
            {"changed": result.changed, "rating": wire.rating_data(result.rating)},
            status=status.HTTP_201_CREATED if result.changed else status.HTTP_200_OK,
        )
