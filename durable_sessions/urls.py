"""HTTP routes (the REST API); a host project includes them under a prefix of its choice.

Session ids are matched as any path segment and checked by the views, so that a malformed
id gets the API's JSON 404 like an unknown one.
"""

from django.urls import path
from django.views.i18n import JavaScriptCatalog

from durable_sessions.aisdk import views as aisdk
from durable_sessions.api import (
    actions,
    approvals,
    branches,
    devices,
    docs,
    erasure,
    ops,
    rating,
    views,
)
from durable_sessions.app_settings import ds_settings

app_name = "durable_sessions"

SESSION = "sessions/<str:session_id>/"
# The AI SDK's endpoints (read when the URLs load): chat, chat/<id>/stream, chat/<id>/cancel.
AISDK = ds_settings.AISDK_PREFIX

urlpatterns = [
    # The translations of client.js and widget.js for the request's language (a script file).
    path(
        "jsi18n/",
        JavaScriptCatalog.as_view(packages=["durable_sessions"]),
        name="javascript-catalog",
    ),
    path("sessions/", views.SessionListView.as_view(), name="session-create"),
    path(SESSION, views.SessionDetailView.as_view(), name="session-detail"),
    path(f"{SESSION}messages/", views.MessageListView.as_view(), name="session-messages"),
    path(
        f"{SESSION}messages/<int:message_id>/edit/",
        branches.EditView.as_view(),
        name="session-message-edit",
    ),
    path(
        f"{SESSION}messages/<int:message_id>/regenerate/",
        branches.RegenerateView.as_view(),
        name="session-message-regenerate",
    ),
    path(
        f"{SESSION}messages/<int:message_id>/activate/",
        branches.ActivateView.as_view(),
        name="session-message-activate",
    ),
    path(f"{SESSION}events/", views.EventListView.as_view(), name="session-events"),
    path(f"{SESSION}handoff/", actions.HandoffRequestView.as_view(), name="session-handoff"),
    path(f"{SESSION}take-over/", actions.TakeOverView.as_view(), name="session-take-over"),
    path(f"{SESSION}hand-back/", actions.HandBackView.as_view(), name="session-hand-back"),
    path(f"{SESSION}transfer/", actions.TransferView.as_view(), name="session-transfer"),
    path(f"{SESSION}close/", actions.CloseView.as_view(), name="session-close"),
    path(
        f"{SESSION}erase-customer/",
        erasure.EraseCustomerView.as_view(),
        name="session-erase-customer",
    ),
    path(f"{SESSION}rating/", rating.RatingView.as_view(), name="session-rating"),
    path(f"{SESSION}cancel-reply/", actions.CancelReplyView.as_view(), name="session-cancel-reply"),
    path(
        f"{SESSION}approvals/<str:approval_id>/",
        approvals.ApprovalAnswerView.as_view(),
        name="session-approval",
    ),
    path(f"{SESSION}devices/", devices.DeviceGrantListView.as_view(), name="session-devices"),
    path(
        f"{SESSION}devices/<int:grant_id>/",
        devices.DeviceGrantDetailView.as_view(),
        name="session-device",
    ),
    path("devices/redeem/", devices.DeviceRedeemView.as_view(), name="device-redeem"),
    path(f"{AISDK}chat", aisdk.ChatView.as_view(), name="aisdk-chat"),
    path(f"{AISDK}chat/<str:chat_id>/stream", aisdk.ChatStreamView.as_view(), name="aisdk-stream"),
    path(f"{AISDK}chat/<str:chat_id>/cancel", aisdk.ChatCancelView.as_view(), name="aisdk-cancel"),
    path("api/schema/", docs.SchemaView.as_view(), name="api-schema"),
    path("api/docs/", docs.DocsView.as_view(), name="api-docs"),
    path("health/live/", ops.live, name="health-live"),
    path("health/ready/", ops.ready, name="health-ready"),
    path("metrics/", ops.metrics_view, name="metrics"),
]
