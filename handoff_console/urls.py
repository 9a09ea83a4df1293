"""HTTP routes of the console; a host project includes them under a prefix of its choice."""

from django.urls import path

from handoff_console import actions, views

app_name = "handoff_console"

urlpatterns = [
    path("", views.QueueView.as_view(), name="queue"),
    path("sessions/<uuid:session_id>/", views.SessionView.as_view(), name="session"),
    path("sessions/<uuid:session_id>/take-over/", actions.take_over, name="take_over"),
    path("sessions/<uuid:session_id>/hand-back/", actions.hand_back, name="hand_back"),
    path("sessions/<uuid:session_id>/transfer/", actions.transfer, name="transfer"),
    path("sessions/<uuid:session_id>/close/", actions.close, name="close"),
    path("sessions/<uuid:session_id>/notes/", actions.notes, name="notes"),
]
