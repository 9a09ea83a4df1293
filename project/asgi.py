"""ASGI entry point: HTTP through Django, websockets through Channels."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# Set up Django before importing anything that touches models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from durable_sessions.middleware import SessionAuthMiddleware  # noqa: E402
from durable_sessions.observability.asgi import TracingMiddleware  # noqa: E402
from durable_sessions.origins import OriginValidator  # noqa: E402
from durable_sessions.routing import websocket_router  # noqa: E402
from durable_sessions.routing import websocket_urlpatterns as session_routes  # noqa: E402
from durable_sessions.runtime.embedded import EmbeddedRunner  # noqa: E402
from handoff_console.routing import websocket_urlpatterns as console_routes  # noqa: E402

serve_static = settings.DEBUG or settings.SERVE_STATIC
http_app = ASGIStaticFilesHandler(django_asgi_app) if serve_static else django_asgi_app

# With RUNNER "embedded" (the default), agent runs execute in this process. With TRACING
# on, each HTTP request and websocket connection is a span.
application = EmbeddedRunner(
    TracingMiddleware(
        ProtocolTypeRouter(
            {
                "http": http_app,
                # The whole Origin (scheme, host, port) must be one of CSRF_TRUSTED_ORIGINS or
                # the server's own; an unknown path is closed with 4404.
                "websocket": OriginValidator(
                    SessionAuthMiddleware(websocket_router(session_routes + console_routes))
                ),
            }
        )
    )
)

# Everything made while loading (Django, the apps, URL patterns, templates' code) lives as
# long as the process. Freezing it keeps the cyclic collector from walking it again: the
# full collection that follows a surge of connections then walks only what came since
# (docs/deploy.md). DS_GC_FREEZE=0 leaves the collector as CPython sets it.
if os.environ.get("DS_GC_FREEZE", "1") != "0":
    gc.collect()
    gc.freeze()
