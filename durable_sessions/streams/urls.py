"""URLs of the Durable Streams protocol; include them at the site's root::

    path("", include("durable_sessions.streams.urls"))

Generic streams are served under ``STREAMS_PREFIX`` (default ``v1/stream/``) and sessions
under ``SESSION_STREAMS_PREFIX`` (default ``v1/session/``), both read when the URLs load.
"""

import re

from django.urls import re_path
from django.views.decorators.csrf import csrf_exempt

from durable_sessions.app_settings import ds_settings
from durable_sessions.streams.generic import stream_view
from durable_sessions.streams.sessions import session_stream_view

app_name = "durable_streams"

# CSRF is checked by the views themselves, for requests that a cookie authenticates.
urlpatterns = [
    re_path(
        rf"^{re.escape(ds_settings.SESSION_STREAMS_PREFIX)}(?P<session_id>[^/]+)$",
        csrf_exempt(session_stream_view),
        name="session-stream",
    ),
    re_path(
        rf"^{re.escape(ds_settings.STREAMS_PREFIX)}(?P<path>.+)$",
        csrf_exempt(stream_view),
        name="stream",
    ),
]
