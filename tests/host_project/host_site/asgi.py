"""ASGI entry point of the host project: HTTP through Django, websockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "host_site.settings")
# Load the settings and the app registry before anything below imports models.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter  # noqa: E402

import durable_sessions.routing  # noqa: E402
import handoff_console.routing  # noqa: E402
from durable_sessions.origins import OriginValidator  # noqa: E402
from durable_sessions.runtime.embedded import EmbeddedRunner  # noqa: E402

websocket_routes = (
    durable_sessions.routing.websocket_urlpatterns + handoff_console.routing.websocket_urlpatterns
)

# The agent's runs execute in this process (RUNNER "embedded"), started with the server.
application = EmbeddedRunner(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            # Browsers send cookies with cross-site websocket handshakes and CSRF middleware
            # does not see them: the Origin check (scheme, host and port) is what keeps
            # other sites out. The auth stack turns the session cookie into scope["user"]
            # and scope["session"]; the router closes an unknown path with 4404.
            "websocket": OriginValidator(
                AuthMiddlewareStack(durable_sessions.routing.websocket_router(websocket_routes))
            ),
        }
    )
)
