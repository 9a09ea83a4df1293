"""The ASGI app of a consumer class, without a coroutine of its own per connection."""

from __future__ import annotations

import functools
from collections.abc import Awaitable
from typing import Any


def consumer_app(cls: type, **initkwargs: Any) -> Any:
    """What Channels' ``cls.as_asgi(**initkwargs)`` is, except that the app hands back the
    consumer's coroutine rather than awaiting it in one of its own, which every open
    connection would keep for as long as it stays open."""

    def app(scope: Any, receive: Any, send: Any) -> Awaitable[Any]:
        return cls(**initkwargs)(scope, receive, send)

    app.consumer_class = cls  # type: ignore[attr-defined]
    app.consumer_initkwargs = initkwargs  # type: ignore[attr-defined]
    functools.update_wrapper(app, cls, updated=())
    # A plain function, but ASGI 3: the attribute tells ASGI servers so.
    app._asgi_single_callable = True  # type: ignore[attr-defined]
    return app
