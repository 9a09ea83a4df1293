"""client.js drops a message the server refused as too_large, instead of resending it."""

from __future__ import annotations

import asyncio
import json

from durable_sessions.models import Message
from tests.test_browser_chat import (
    WAIT_MS,
    agent_server,
    browser_test,
    new_context,
    open_page,
    start_chat,
)


@browser_test
async def test_a_message_too_large_is_sent_once_and_reported(browser, daphne):
    # Larger than MAX_FRAME_BYTES (64 KiB); the page's textarea stops at 16,000 characters,
    # a script calling client.send() does not.
    server = agent_server(daphne)
    tab = await open_page(await new_context(browser, server))
    sent: list[str] = []
    tab.page.on(
        "websocket",
        lambda ws: ws.on("framesent", lambda payload: sent.append(payload)),
    )
    session_id = await start_chat(tab)
    page = tab.page
    await page.evaluate("window.durableChat.send('x'.repeat(70000))")
    await page.wait_for_selector("#notice:not([hidden])", timeout=WAIT_MS)
    assert "could not be sent" in (await page.text_content("#notice") or "")
    assert await page.evaluate("window.durableChat.pending.length") == 0
    # The client resends an unconfirmed message after 5 s: this one must not come back.
    await asyncio.sleep(6.5)
    sends = [json.loads(p) for p in sent if '"message.send"' in p[:200]]
    assert len(sends) == 1 and list(sends[0])[:2] == ["type", "ref"], [list(s) for s in sends]
    assert await Message.objects.filter(session_id=session_id, role="user").acount() == 0
