"""The consumer loop's wait for the first of its sources (client frames, the layer)."""

from __future__ import annotations

import asyncio

import pytest

from durable_sessions.consumers import _any_done


async def test_it_returns_when_one_source_is_done_and_leaves_no_callback():
    loop = asyncio.get_running_loop()
    idle, ready = loop.create_future(), loop.create_future()
    loop.call_later(0.01, ready.set_result, {"type": "websocket.receive"})
    await asyncio.wait_for(_any_done([idle, ready]), 5)
    assert ready.done() and not idle.done()
    assert not idle._callbacks  # the next wait adds its own
    await asyncio.wait_for(_any_done([idle, ready]), 5)  # one already done: at once
    idle.cancel()


async def test_a_cancelled_wait_leaves_no_callback():
    loop = asyncio.get_running_loop()
    sources = [loop.create_future(), loop.create_future()]
    waiter = asyncio.ensure_future(_any_done(sources))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not any(source._callbacks for source in sources)
    sources[1].set_result(None)  # the finished wait is not woken again
    for source in sources:
        source.cancel()
