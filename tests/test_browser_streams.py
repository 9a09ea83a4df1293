"""A session followed as a Durable Stream from a real browser (Chromium, Playwright).

The customer's page follows its own session's stream with client.js'
``followSessionStream`` (an ``EventSource``), authenticated by nothing but its cookie, while
the demo agent answers: every log event arrives once, in
order, message text (markup included) arrives as JSON text and runs nothing; another
visitor's browser is refused.
"""

from __future__ import annotations

from tests.test_browser_chat import (
    IMG,
    SCRIPT,
    WAIT_MS,
    agent_server,
    browser_test,
    new_context,
    open_page,
    send,
    start_chat,
    wait_for_reply_state,
)

# client.js' read-only follower, as a page that only shows the conversation would use it.
FOLLOW = """async id => {
  const { followSessionStream } = await import("/static/durable_sessions/client.js");
  window.__events = [];
  window.__ended = null;
  followSessionStream(id, {
    onEvents: events => window.__events.push(...events),
    onEnd: reason => { window.__ended = reason; },
    retryMs: 100,
    maxFailures: 2,
  });
}"""
COMPLETED = """() => window.__events.some(
  e => e.type === "message.completed") && window.__events.some(
  e => e.type === "message.created" && e.data.message.role === "user")"""


@browser_test
async def test_a_page_follows_its_session_over_sse_with_its_cookie(browser, daphne):
    reply = f"Here: {IMG} {SCRIPT}"
    server = agent_server(daphne, reply=reply)
    context = await new_context(browser, server)
    tab = await open_page(context)
    session_id = await start_chat(tab)
    await tab.page.evaluate(FOLLOW, session_id)
    await send(tab.page, IMG)
    assert await wait_for_reply_state(tab.page, "complete") == reply
    await tab.page.wait_for_function(COMPLETED, timeout=WAIT_MS)
    events = await tab.page.evaluate("() => window.__events")
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    created = [e["data"]["message"] for e in events if e["type"] == "message.created"]
    assert [m["content"] for m in created if m["role"] == "user"] == [IMG]
    deltas = "".join(e["data"]["text"] for e in events if e["type"] == "message.delta")
    assert deltas == reply
    assert tab.dialogs == [] and tab.errors == []

    stranger = await open_page(await new_context(browser, server))
    await stranger.page.goto("/")
    await stranger.page.evaluate(FOLLOW, session_id)
    await stranger.page.wait_for_function("() => window.__ended", timeout=WAIT_MS)
    assert await stranger.page.evaluate("() => window.__ended") == "refused"
    assert await stranger.page.evaluate("() => window.__events") == []
