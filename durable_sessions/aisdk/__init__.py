"""The Vercel AI SDK's UI message stream over HTTP: ``POST chat``, ``GET chat/<id>/stream``
and ``POST chat/<id>/cancel`` (docs/aisdk.md). A thin transport: it reads the session's
log and writes through the session service only."""
