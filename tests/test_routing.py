"""websocket_router: Channels' URLRouter routing, without a router frame per connection."""

from __future__ import annotations

import pytest
from channels.routing import URLRouter
from django.urls import path, re_path

from durable_sessions.routing import websocket_router

seen: list[dict] = []


async def recorder(scope, receive, send):
    seen.append(scope)
    return "served"


def scope(path: str, **extra) -> dict:
    return {"type": "websocket", "path": path, "headers": [], **extra}


@pytest.fixture(autouse=True)
def _clear():
    seen.clear()


async def test_the_matched_app_gets_its_own_scope_with_the_route():
    router = websocket_router([re_path(r"^ws/x/(?P<key>[0-9]+)/$", recorder)])
    given = scope("/ws/x/42/")
    assert await router(given, None, None) == "served"
    assert seen[0]["url_route"] == {"args": (), "kwargs": {"key": "42"}}
    assert seen[0]["path_remaining"] == ""
    assert "url_route" not in given  # the caller's scope is left as it was


async def test_an_open_connection_keeps_no_coroutine_of_the_router():
    router = websocket_router([path("ws/y/<str:key>/", recorder)])
    coroutine = router(scope("/ws/y/k/"), None, None)
    assert coroutine.cr_code is recorder.__code__  # the app's own, not the router's
    assert await coroutine == "served"
    assert seen[0]["url_route"]["kwargs"] == {"key": "k"}


async def test_root_path_and_nested_routers_route_as_url_router_does():
    nested = URLRouter([re_path(r"^(?P<inner>\w+)/$", recorder)])
    router = websocket_router([re_path(r"^outer/(?P<outer>\w+)/", nested)])
    await router(scope("/app/outer/a/b/", root_path="/app"), None, None)
    assert seen[0]["url_route"]["kwargs"] == {"outer": "a", "inner": "b"}
    with pytest.raises(ValueError, match="No route"):
        websocket_router([re_path(r"^x/$", recorder)])(scope("/x/", root_path="/app"), None, None)


async def test_the_session_consumer_app_hands_back_the_consumers_coroutine():
    from durable_sessions.consumers import SessionConsumer

    app = SessionConsumer.as_asgi()
    assert app.consumer_class is SessionConsumer
    coroutine = app({"type": "websocket"}, None, None)
    assert coroutine.cr_code is SessionConsumer._serve.__code__  # its one coroutine
    coroutine.close()
