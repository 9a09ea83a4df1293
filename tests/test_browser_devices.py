"""Continuing on a second browser through a device link, revoking it, and logging out.

The phone opens the laptop's link, gets that one conversation (live, both ways) and keeps
its own identity; the laptop lists the device and revokes it, after which the phone is
refused. A customer who logs out leaves no transcript in the browser's storage.
"""

from __future__ import annotations

from collections.abc import Callable

from channels.db import database_sync_to_async

from durable_sessions.models import DurableSession
from tests.factories import make_user
from tests.live import DaphneServer
from tests.test_browser_chat import (
    PHONE,
    WAIT_MS,
    agent_server,
    browser_test,
    new_context,
    no_trouble,
    open_page,
    send,
    start_chat,
    texts,
    wait_for_reply_state,
)


@database_sync_to_async
def owner_visitor(session_id: str) -> str:
    return DurableSession.objects.get(pk=session_id).owner_visitor


@browser_test
async def test_a_second_browser_continues_one_conversation_until_it_is_revoked(
    browser, daphne: Callable[..., DaphneServer]
):
    server = agent_server(daphne, reply="Noted.")
    laptop_context = await new_context(browser, server)
    laptop = await open_page(laptop_context)
    shared = await start_chat(laptop)
    await send(laptop.page, "from the laptop")
    await wait_for_reply_state(laptop.page, "complete")

    phone_context = await new_context(browser, server, **PHONE)  # own cookies and storage
    phone = await open_page(phone_context)
    own = await start_chat(phone)  # the phone's own conversation, before the link

    await laptop.page.click("#handover")
    await laptop.page.wait_for_selector("#handover-box:not([hidden])", timeout=WAIT_MS)
    label = await laptop.page.text_content("label[for=handover-url]")
    assert "This link opens this one conversation on one more device" in " ".join(label.split())
    link = await laptop.page.input_value("#handover-url")

    await phone.page.goto(link)
    await phone.page.click("#continue")
    await phone.page.wait_for_selector("#chat[data-status=live]", timeout=WAIT_MS)
    assert phone.page.url.endswith(f"/chat/{shared}/")
    assert await texts(phone.page, "#log li[data-role=user] .text") == ["from the laptop"]
    await send(phone.page, "from the phone")
    await laptop.page.wait_for_selector("#log li[data-role=user]:nth-child(3)", timeout=WAIT_MS)
    # The laptop lists the phone's device; the link was used once.
    await laptop.page.wait_for_selector("#device-list li[data-state=active]", timeout=WAIT_MS)

    # The phone kept its own conversation and identity; it got nothing else of the laptop's.
    await phone.page.goto("/")
    assert await phone.page.locator(f"a[href='/chat/{own}/']").count() == 1
    assert await owner_visitor(own) != await owner_visitor(shared)
    again = await phone_context.new_page()
    assert (await again.goto(link)).status == 302 or again.url.endswith(f"/chat/{shared}/")
    await again.close()
    tablet_context = await new_context(browser, server)
    tablet = await tablet_context.new_page()
    assert (await tablet.goto(link)).status == 410  # a link opens once

    await laptop.page.click("#device-list li[data-state=active] button.revoke")
    await laptop.page.wait_for_selector("#device-list li[data-state=revoked]", timeout=WAIT_MS)
    refused = await phone.page.goto(f"/chat/{shared}/")
    assert refused.status == 404
    no_trouble(laptop)
    for context in (tablet_context, phone_context, laptop_context):
        await context.close()


@database_sync_to_async
def customer_account() -> None:
    make_user("carla")


@browser_test
async def test_logging_out_clears_the_stored_transcripts(browser, daphne):
    await customer_account()
    server = agent_server(daphne, reply="Noted.")
    context = await new_context(browser, server)
    tab = await open_page(context)
    page = tab.page
    await page.goto("/accounts/login/")
    await page.fill("#id_username", "carla")
    await page.fill("#id_password", "pw-carla")
    await page.keyboard.press("Enter")
    await page.wait_for_url(lambda url: not url.endswith("/accounts/login/"))
    await start_chat(tab)
    await send(page, "something private")
    await wait_for_reply_state(page, "complete")
    stored = "Object.keys(localStorage).filter((k) => k.startsWith('durable-sessions:')).length"
    await page.wait_for_function(f"() => {stored} > 0", timeout=WAIT_MS)

    await page.get_by_role("button", name="Log out").click()
    await page.wait_for_load_state("networkidle")
    assert await page.evaluate(stored) == 0
    no_trouble(tab)
    await context.close()
