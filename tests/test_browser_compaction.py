"""A page that left in the middle of a reply comes back after the reply was compacted: the
client accepts the message.snapshot that stands for the seqs it had not seen, and shows
the reply whole, once, without counting a gap."""

from __future__ import annotations

from channels.db import database_sync_to_async

from durable_sessions.models import Message
from durable_sessions.service import compaction
from tests.test_browser_chat import (
    ASSISTANT,
    LONG_REPLY,
    agent_server,
    browser_test,
    new_context,
    no_trouble,
    open_page,
    screenshot,
    send,
    start_chat,
    texts,
    wait_for_reply_chars,
    wait_for_reply_state,
    wait_until,
)


@database_sync_to_async
def reply_ended(session_id: str) -> bool:
    return Message.objects.filter(
        session_id=session_id, role="assistant", state="complete"
    ).exists()


@browser_test
async def test_a_page_back_after_compaction_shows_the_reply_whole(browser, daphne):
    server = agent_server(daphne)
    context = await new_context(browser, server)
    tab = await open_page(context)
    session_id = await start_chat(tab)
    await send(tab.page, "Tell me everything")
    before = await wait_for_reply_chars(tab.page, 40)
    assert len(before) < len(LONG_REPLY)  # left in the middle of the stream
    await tab.page.close()

    await wait_until(lambda: reply_ended(session_id))
    done = await database_sync_to_async(compaction.compact_due)(after_seconds=0)
    assert done.messages == 1 and done.deleted > 0

    back = await open_page(context)  # the same browser storage: it resumes mid-reply
    await back.page.goto(f"/chat/{session_id}/")
    final = await wait_for_reply_state(back.page, "complete")
    assert final == LONG_REPLY
    assert await texts(back.page, f"{ASSISTANT} .text") == [LONG_REPLY]
    after_seq = back.after_seqs()[0]
    snapshots = [f for f in back.frames[0] if f.get("type") == "events"]
    events = [e for batch in snapshots for e in batch["events"]]
    snapshot = next(e for e in events if e["type"] == "message.snapshot")
    # The page had seen part of the reply: the snapshot covers seqs from before it.
    assert snapshot["data"]["from_seq"] <= after_seq < snapshot["seq"]
    assert len(back.sockets) == 1  # no gap was seen, so no reconnect
    await screenshot(back.page, "compaction-resume")
    no_trouble(back)
    await context.close()
