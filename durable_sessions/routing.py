"""Websocket routes; a host project adds these to its ASGI URLRouter."""

from django.urls import path

from durable_sessions.consumers import SessionConsumer

websocket_urlpatterns = [
    path("ws/sessions/<uuid:session_id>/", SessionConsumer.as_asgi()),
]
