"""An ASGI application that serves static files while DEBUG is on (system check W010)."""

from channels.routing import ProtocolTypeRouter
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

from durable_sessions.runtime.embedded import EmbeddedRunner

application = EmbeddedRunner(
    ProtocolTypeRouter({"http": ASGIStaticFilesHandler(get_asgi_application())})
)
