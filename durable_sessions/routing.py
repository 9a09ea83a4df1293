"""Websocket routes; a host project adds these to its ASGI URLRouter."""

from django.urls import re_path

from durable_sessions.consumers import SessionConsumer

websocket_urlpatterns = [
    # Any id reaches the consumer, which closes a malformed one with 4400.
    re_path(r"^ws/sessions/(?P<session_id>[^/]+)/$", SessionConsumer.as_asgi()),
]
