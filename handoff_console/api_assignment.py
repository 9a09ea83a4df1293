"""The console's API of assignment: the operator's availability, their colleagues (with
availability, teams and load), and the transfer of a session to a team."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from durable_sessions import service
from durable_sessions.api.actions import ActionView, action_schema
from durable_sessions.api.base import ApiView, validated
from durable_sessions.api.permissions import OperatorOnly, SessionAccess
from durable_sessions.api.schema import document, error_responses
from durable_sessions.api.serializers import BodySerializer, ReasonSerializer, StrictCharField
from durable_sessions.errors import InvalidInput
from handoff_console.api import IsOperator
from handoff_console.availability import availability_of, operators, set_availability, teams
from handoff_console.models import Availability, Team


class AvailabilitySetSerializer(BodySerializer):
    availability = StrictCharField(help_text="`online`, `away` or `offline`.")


class AvailabilitySerializer(serializers.Serializer):
    availability = serializers.ChoiceField(
        choices=Availability.values,
        help_text="In effect: `offline` whatever was chosen while no console page is open.",
    )


class OperatorSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    availability = serializers.ChoiceField(choices=Availability.values)
    open = serializers.IntegerField(help_text="Open sessions they hold.")
    teams = serializers.ListField(child=serializers.CharField())


class TeamSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()


class OperatorListSerializer(serializers.Serializer):
    operators = OperatorSerializer(many=True)
    teams = TeamSerializer(many=True)


class AvailabilityView(ApiView):
    """The calling operator's availability."""

    permission_classes = [IsOperator]

    @document(
        operation_id="availability_read",
        tags=["assignment"],
        summary="Read my availability",
        responses={200: AvailabilitySerializer, **error_responses(403)},
    )
    def get(self, request: Request) -> Response:
        return Response({"availability": availability_of(request.user)})

    @document(
        operation_id="availability_set",
        tags=["assignment"],
        summary="Set my availability",
        description="For operators. Only `online` operators are auto-assigned sessions; "
        "colleagues see the change on their next refresh.",
        request=AvailabilitySetSerializer,
        responses={200: AvailabilitySerializer, **error_responses(400, 403, 415)},
    )
    def post(self, request: Request) -> Response:
        body = validated(AvailabilitySetSerializer, request.data)
        return Response({"availability": set_availability(request.user, body["availability"])})


class OperatorsView(ApiView):
    """Operators and teams, as the console shows colleagues."""

    permission_classes = [IsOperator]

    @document(
        operation_id="operators_list",
        tags=["assignment"],
        summary="List operators and teams",
        description="For operators: each operator's availability, open sessions and teams.",
        responses={200: OperatorListSerializer, **error_responses(403)},
    )
    def get(self, request: Request) -> Response:
        return Response({"operators": operators(), "teams": teams()})


class TeamTransferSerializer(ReasonSerializer):
    team = StrictCharField(help_text="The slug of a team of the console.")


class TeamTransferView(ActionView):
    """The operator holding the session passes it to a team."""

    permission_classes = [SessionAccess, OperatorOnly]

    @action_schema(
        "handoff_transfer_team",
        "Transfer to a team",
        "For the operator holding the session (anyone else gets 409). The session waits in "
        "the queue again, for the team's members; `reason` is the note they read.",
        request=TeamTransferSerializer,
    )
    def post(self, request: Request, session_id: str) -> Response:
        body = validated(TeamTransferSerializer, request.data)
        if not Team.objects.filter(slug=body["team"]).exists():
            raise InvalidInput("team", "no such team")
        service.transfer_to_team(self.session.pk, request.user, body["team"], reason=body["reason"])
        return self.result(True)
