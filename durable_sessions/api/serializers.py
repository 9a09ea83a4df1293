"""Request and response shapes of the API.

Request serializers only validate types and ranges; the session service checks the rest
(lengths, empty text, closed sessions) with the same errors as on the websocket. Response
serializers only describe, for the OpenAPI schema, the shapes the views build with
:mod:`durable_sessions.wire`: a session, a message or an event has one JSON shape
everywhere (HTTP, websocket, event payloads).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.settings import api_settings

from durable_sessions.models import (
    Control,
    MessageState,
    PartState,
    PartType,
    Role,
    RunStatus,
    Status,
)
from durable_sessions.service.validation import MAX_REASON_CHARS, MAX_TITLE_CHARS

MAX_PAGE = 1000
MAX_SESSION_PAGE = 200
MAX_WAIT_SECONDS = 30
# Integers go to the database: outside a signed 64-bit range PostgreSQL refuses the query
# ("bigint out of range") and SQLite the parameter.
MAX_BIGINT = 2**63 - 1
MIN_BIGINT = -(2**63)


class StrictCharField(serializers.CharField):
    """A string, taken as is: no number is turned into text, no whitespace is trimmed."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer in the database's range: no string, float or boolean."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", MIN_BIGINT)
        kwargs.setdefault("max_value", MAX_BIGINT)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class BodySerializer(serializers.Serializer):
    """A JSON object body whose unknown keys are errors, as in websocket frames."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            # Keyed like DRF's own errors: Serializer.errors must be a dict.
            raise serializers.ValidationError(
                {api_settings.NON_FIELD_ERRORS_KEY: ["the request body must be a JSON object"]}
            )
        unknown = sorted(str(name) for name in data if name not in self.fields)
        if unknown:
            raise serializers.ValidationError({unknown[0]: ["unexpected field"]})
        return super().to_internal_value(data)


# --- request bodies -------------------------------------------------------------------------


class SessionCreateSerializer(BodySerializer):
    title = StrictCharField(
        max_length=MAX_TITLE_CHARS, allow_blank=True, required=False, default=""
    )


class MessageCreateSerializer(BodySerializer):
    content = StrictCharField(help_text="The message text (plain text, never HTML).")
    client_id = StrictCharField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Chosen by the client; a retry with the same id is stored once. "
        "The Idempotency-Key header may carry it instead.",
    )
    mode = serializers.ChoiceField(
        choices=["queue", "steer", "interrupt"],
        required=False,
        allow_null=True,
        default=None,
        help_text="The customer's choice while the agent answers: `queue` (after this "
        "answer), `steer` (into this answer, at its next step boundary) or `interrupt` "
        "(stop this answer, keeping its text, and answer this message); default: the "
        "session's `send_mode` metadata, else the DEFAULT_SEND_MODE setting.",
    )


class ReasonSerializer(BodySerializer):
    reason = StrictCharField(
        max_length=MAX_REASON_CHARS, allow_blank=True, required=False, default=""
    )


class ApprovalAnswerSerializer(BodySerializer):
    approved = serializers.BooleanField(help_text="true approves the call, false denies it.")
    reason = StrictCharField(
        max_length=MAX_REASON_CHARS, allow_blank=True, required=False, default=""
    )
    client_id = StrictCharField(
        required=False,
        allow_null=True,
        default=None,
        max_length=64,
        help_text="Chosen by the client: a retry of the same answer gets the same result.",
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # JSON true/false only: DRF's BooleanField would also take "yes" or 1.
        if isinstance(data, Mapping) and "approved" in data:
            if not isinstance(data["approved"], bool):
                raise serializers.ValidationError({"approved": ["must be true or false"]})
        return super().to_internal_value(data)


class TransferSerializer(ReasonSerializer):
    to = StrictIntegerField(help_text="The user id of the operator who takes the session.")


# --- query parameters -----------------------------------------------------------------------


class SessionListQuery(serializers.Serializer):
    control = serializers.ChoiceField(choices=Control.choices, required=False)
    status = serializers.ChoiceField(choices=Status.choices, required=False)
    assigned = serializers.ChoiceField(
        choices=[("me", "held by me"), ("none", "held by no operator")],
        required=False,
        help_text="`me`: sessions the calling operator holds; `none`: held by no operator.",
    )
    limit = serializers.IntegerField(min_value=1, max_value=MAX_SESSION_PAGE, default=50)
    offset = serializers.IntegerField(min_value=0, max_value=MAX_BIGINT, default=0)


class MessageListQuery(serializers.Serializer):
    after_seq = serializers.IntegerField(
        min_value=0,
        max_value=MAX_BIGINT,
        default=0,
        help_text="Only messages created after this seq.",
    )
    limit = serializers.IntegerField(min_value=1, max_value=MAX_PAGE, default=100)
    versions = serializers.ChoiceField(
        choices=["active", "all"],
        default="active",
        help_text="`active` (default): the shown branch, what the page shows and the agent "
        "reads; `all`: every version of edited and regenerated messages too, and what "
        "followed them.",
    )


class EventListQuery(serializers.Serializer):
    after_seq = serializers.IntegerField(
        min_value=0, max_value=MAX_BIGINT, default=0, help_text="Only events after this seq."
    )
    limit = serializers.IntegerField(min_value=1, max_value=MAX_PAGE, default=MAX_PAGE)
    wait = serializers.FloatField(
        min_value=0,
        max_value=MAX_WAIT_SECONDS,
        default=0,
        help_text="Long poll: when there is no event after `after_seq`, wait up to this "
        "many seconds for one to be committed.",
    )


# --- responses ------------------------------------------------------------------------------


class SessionSerializer(serializers.Serializer):
    """A conversation: who answers it, whether it is open, and the seq of its newest event."""

    id = serializers.UUIDField()
    title = serializers.CharField()
    control = serializers.ChoiceField(
        choices=Control.choices, help_text="Who answers: the AI, the queue for a human, a human."
    )
    status = serializers.ChoiceField(choices=Status.choices)
    assigned_operator_id = serializers.IntegerField(
        allow_null=True, help_text="The user id of the operator holding the session."
    )
    last_seq = serializers.IntegerField(help_text="The seq of the session's newest event.")
    created_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)
    metadata = serializers.DictField()


class RunSerializer(serializers.Serializer):
    """The session's newest agent run: how many workers tried it."""

    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=RunStatus.choices)
    attempts = serializers.IntegerField(help_text="How often a worker claimed the run.")
    crashes = serializers.IntegerField(
        help_text="Attempts that ended with a lost worker (a planned hand-back is not one)."
    )
    max_attempts = serializers.IntegerField(
        help_text="RUN_MAX_ATTEMPTS: after this many crashes the run fails and escalates."
    )
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class SessionDetailSerializer(SessionSerializer):
    """A session with what its agent does now and its newest run."""

    agent_status = serializers.CharField(
        help_text="thinking, streaming, calling_tool, awaiting_approval, reconnecting, "
        "unresponsive or idle."
    )
    run = RunSerializer(allow_null=True)
    chat_id = serializers.CharField(
        allow_null=True,
        help_text="The AI SDK chat id mapped to this session (docs/aisdk.md), or null.",
    )


class AuthorSerializer(serializers.Serializer):
    """The participant who wrote a message."""

    id = serializers.IntegerField()
    kind = serializers.CharField()
    display_name = serializers.CharField()


class DeciderSerializer(serializers.Serializer):
    kind = serializers.CharField()
    display_name = serializers.CharField()


class ApprovalSerializer(serializers.Serializer):
    """A tool call's approval: who may answer, until when, and the answer once given."""

    id = serializers.CharField()
    approvers = serializers.ChoiceField(choices=["any", "customer", "operator"])
    expires_at = serializers.DateTimeField(allow_null=True)
    pending = serializers.BooleanField()
    approved = serializers.BooleanField(allow_null=True)
    decision = serializers.ChoiceField(
        choices=["approved", "denied", "expired", "cancelled"], allow_null=True
    )
    reason = serializers.CharField(allow_null=True)
    decided_by = DeciderSerializer(allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)


class PartSerializer(serializers.Serializer):
    """One part of a message (see docs/protocol.md, "Parts"). Text and reasoning carry
    `text`; a tool call `tool_name`, `tool_call_id`, `input_text`, `input`, `output`,
    `error` and `approval`; a data part `name` and `data`; a source `url` and `title`."""

    id = serializers.CharField()
    index = serializers.IntegerField()
    step = serializers.IntegerField()
    type = serializers.ChoiceField(choices=PartType.choices)
    state = serializers.ChoiceField(choices=PartState.choices)
    text = serializers.CharField(required=False)
    tool_name = serializers.CharField(required=False)
    tool_call_id = serializers.CharField(required=False)
    input_text = serializers.CharField(required=False)
    input = serializers.JSONField(required=False, allow_null=True)
    output = serializers.JSONField(required=False, allow_null=True)
    error = serializers.CharField(required=False, allow_null=True)
    approval = ApprovalSerializer(required=False, allow_null=True)
    name = serializers.CharField(required=False)
    data = serializers.JSONField(required=False)
    url = serializers.CharField(required=False)
    title = serializers.CharField(required=False)


class ApprovalResultSerializer(serializers.Serializer):
    seq = serializers.IntegerField(
        allow_null=True, help_text="The answer's event; null on a retry."
    )
    duplicate = serializers.BooleanField()
    message_id = serializers.IntegerField()
    part = PartSerializer()


class MessageSerializer(serializers.Serializer):
    """A message of the transcript; an AI reply grows while its state is `streaming`."""

    id = serializers.IntegerField()
    role = serializers.ChoiceField(choices=Role.choices)
    author = AuthorSerializer()
    content = serializers.CharField()
    parts = PartSerializer(many=True)
    state = serializers.ChoiceField(choices=MessageState.choices)
    client_id = serializers.CharField(allow_null=True)
    seq = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)
    mode = serializers.ChoiceField(
        choices=["queue", "steer", "interrupt"],
        allow_null=True,
        help_text="How a customer's message sent while the agent was busy was taken; null "
        "for every other message.",
    )
    version_of = serializers.IntegerField(
        allow_null=True,
        help_text="An edited or regenerated version: the id of the first version of its "
        "sibling group; null on a first version.",
    )
    active = serializers.BooleanField(
        help_text="Whether the message is on the shown branch (what the agent reads and "
        "pages show)."
    )


class ListedMessageSerializer(MessageSerializer):
    """A message as the transcript lists it: which version it is and on which branch."""

    version = serializers.IntegerField(
        help_text="Which version of its sibling group the message is, in creation order "
        "(1: the first; 1 on a message never edited or regenerated)."
    )
    versions = serializers.IntegerField(
        help_text="How many versions its sibling group has (1 when never edited)."
    )
    hidden_under = serializers.IntegerField(
        allow_null=True,
        help_text="Null on the shown branch; else the id of the version whose branch holds "
        "the message (showing that version shows it again).",
    )


class EventSerializer(serializers.Serializer):
    """One event of the session's log, in the websocket's envelope (see docs/protocol.md)."""

    type = serializers.CharField()
    seq = serializers.IntegerField()
    at = serializers.DateTimeField()
    data = serializers.DictField()


class SessionPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = SessionSerializer(many=True)


class MessagePageSerializer(serializers.Serializer):
    messages = ListedMessageSerializer(many=True)
    next_after_seq = serializers.IntegerField(
        allow_null=True,
        help_text="The `after_seq` of the next page; null when this page is the last.",
    )


class EventPageSerializer(serializers.Serializer):
    session = SessionSerializer()
    events = EventSerializer(many=True)
    more = serializers.BooleanField(help_text="More events follow the last one of this page.")


class PostedMessageSerializer(serializers.Serializer):
    seq = serializers.IntegerField(help_text="The seq of the message's `message.created` event.")
    duplicate = serializers.BooleanField(
        help_text="True when this was a retry: the message was stored by an earlier request."
    )
    mode = serializers.ChoiceField(
        choices=["queue", "steer", "interrupt"],
        help_text="How the agent takes the message: `queue` (also when it was idle), `steer` "
        "or `interrupt`; `steer` falls back to `queue` when the agent is not writing an "
        "answer or cannot read steering messages.",
    )
    message = MessageSerializer()


class ActionResultSerializer(serializers.Serializer):
    changed = serializers.BooleanField(help_text="False when the session was already so.")
    session = SessionSerializer()


class CancelResultSerializer(serializers.Serializer):
    cancelled = serializers.IntegerField(help_text="How many streaming replies were stopped.")


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    field = serializers.CharField(required=False)


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
