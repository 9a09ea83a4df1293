"""HTTP routes; a host project includes them under a prefix of its choice."""

from django.urls import path

from durable_sessions import views

app_name = "durable_sessions"

urlpatterns = [
    path("sessions/", views.create_session, name="session-create"),
    path("sessions/<uuid:session_id>/events/", views.session_events, name="session-events"),
]
