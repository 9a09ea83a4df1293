"""An ASGI application that forgot the embedded runner (for system check W008)."""

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

application = ProtocolTypeRouter({"http": get_asgi_application()})
