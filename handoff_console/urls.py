"""HTTP routes of the console; a host project includes them under a prefix of its choice.

The pages are here; their actions are the REST API's (``durable_sessions.urls``), except
private notes, the console's own data, served by :mod:`handoff_console.api`. As there,
the session id of an API path is any segment, so that a malformed id gets a JSON 404.
"""

from django.urls import path
from django.views.i18n import JavaScriptCatalog

from handoff_console import api, api_assignment, views

app_name = "handoff_console"

urlpatterns = [
    # The translations of the console's modules and client.js (a script file, no inline script).
    path(
        "jsi18n/",
        JavaScriptCatalog.as_view(packages=["durable_sessions", "handoff_console"]),
        name="javascript-catalog",
    ),
    path("", views.QueueView.as_view(), name="queue"),
    path("sessions/<uuid:session_id>/", views.SessionView.as_view(), name="session"),
    path("api/sessions/<str:session_id>/notes/", api.NotesView.as_view(), name="api-notes"),
    path("api/sessions/<str:session_id>/brief/", api.BriefView.as_view(), name="api-brief"),
    path("api/sessions/<str:session_id>/read/", api.ReadView.as_view(), name="api-read"),
    path("api/replies/", api.CannedRepliesView.as_view(), name="api-replies"),
    path(
        "api/sessions/<str:session_id>/transfer-team/",
        api_assignment.TeamTransferView.as_view(),
        name="api-transfer-team",
    ),
    path("api/availability/", api_assignment.AvailabilityView.as_view(), name="api-availability"),
    path("api/operators/", api_assignment.OperatorsView.as_view(), name="api-operators"),
]
