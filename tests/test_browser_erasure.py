"""Erasing a customer from the admin, in a real browser: it asks first, then the customer's
open page and an operator's console view of that session learn at once that the
conversation was deleted (close code 4410) and stop reconnecting."""

from __future__ import annotations

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from durable_sessions.models import DeletionRecord, DurableSession
from tests.live import server_env
from tests.test_browser_chat import WAIT_MS, browser_test, new_context, open_page, start_chat
from tests.test_browser_csp import log_in


@browser_test
async def test_admin_erasure_closes_the_customers_page_and_the_console_view(browser, daphne):
    await database_sync_to_async(get_user_model().objects.create_superuser)("root", "", "pw-root")
    server = daphne(server_env())
    customer = await open_page(await new_context(browser, server))
    session_id = await start_chat(customer)

    staff = await new_context(browser, server)
    console = (await open_page(staff)).page
    await log_in(console, f"/accounts/login/?next=/console/sessions/{session_id}/", "root")
    await console.wait_for_selector("#connection:has-text('Live')", timeout=WAIT_MS)

    admin = await staff.new_page()
    await admin.goto("/admin/durable_sessions/durablesession/")
    await admin.check(f"input[name=_selected_action][value='{session_id}']")
    await admin.select_option("select[name=action]", "erase_customers")
    await admin.click("button[name=index]")
    await admin.wait_for_selector("text=cannot be undone", timeout=WAIT_MS)
    exists = database_sync_to_async(DurableSession.objects.filter(pk=session_id).exists)
    assert await exists()  # nothing happens before the confirmation
    await admin.click("input[type=submit][value='Yes, erase them']")
    await admin.wait_for_selector(".messagelist .success", timeout=WAIT_MS)

    page = customer.page
    await page.wait_for_selector("#chat[data-status=refused]", timeout=WAIT_MS)
    await page.wait_for_selector("text=This conversation was deleted.", timeout=WAIT_MS)
    await console.wait_for_selector("#connection:has-text('Session deleted')", timeout=WAIT_MS)
    assert not await exists()
    record = await database_sync_to_async(DeletionRecord.objects.get)()
    assert (record.kind, record.via, record.sessions) == ("erasure", "admin", 1)
