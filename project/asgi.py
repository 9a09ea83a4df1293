"""ASGI entry point: HTTP through Django, websockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# Set up Django before importing anything that touches models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from durable_sessions.middleware import SessionAuthMiddleware  # noqa: E402
from durable_sessions.routing import websocket_urlpatterns as session_routes  # noqa: E402
from durable_sessions.runtime.embedded import EmbeddedRunner  # noqa: E402
from handoff_console.routing import websocket_urlpatterns as console_routes  # noqa: E402

serve_static = settings.DEBUG or settings.SERVE_STATIC
http_app = ASGIStaticFilesHandler(django_asgi_app) if serve_static else django_asgi_app

# With RUNNER "embedded" (the default), agent runs execute in this process.
application = EmbeddedRunner(
    ProtocolTypeRouter(
        {
            "http": http_app,
            "websocket": AllowedHostsOriginValidator(
                SessionAuthMiddleware(URLRouter(session_routes + console_routes))
            ),
        }
    )
)
