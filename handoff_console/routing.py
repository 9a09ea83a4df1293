"""Websocket routes of the console (its live feed); added to the host's URLRouter."""

from django.urls import path

from handoff_console.consumers import ConsoleFeedConsumer

websocket_urlpatterns = [
    path("ws/console/", ConsoleFeedConsumer.as_asgi()),
]
