"""The REST API: Django REST framework endpoints over the session service.

Every write goes through :mod:`durable_sessions.service`, so the events an HTTP client
causes are the very events websocket clients receive. The views carry their own
authentication, permissions, error handler and OpenAPI schema class, so a host project
needs no ``REST_FRAMEWORK`` or ``SPECTACULAR_SETTINGS`` for them (see docs/api.md).
"""
