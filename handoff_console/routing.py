"""Websocket routes of the console (its live feed); added to the host's URLRouter."""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
