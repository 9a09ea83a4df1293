"""Names are bidi-isolated: U+202E (right-to-left override) in an operator's name does not
reverse the text around it, on the customer's page or in the console.

The adapter strips bidi controls from the names it makes (see test_malformed_input); here
the name is stored as a host's own adapter, or an older version, may have stored it.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from playwright.async_api import Page

from durable_sessions import service
from durable_sessions.adapter import SessionAdapter
from tests.test_browser_chat import (
    WAIT_MS,
    agent_server,
    browser_test,
    new_context,
    no_trouble,
    open_page,
    start_chat,
)
from tests.test_browser_console import DESKTOP, log_in, open_session, operator
from tests.test_browser_console import open_page as open_console_page

db = database_sync_to_async
RLO = "\u202e"

# Where each word starts on the screen, found through the element's text nodes.
WORD_LEFT = """([selector, words]) => {
  const root = document.querySelector(selector);
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const left = {};
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const word of words) {
      const at = node.data.indexOf(word);
      if (at < 0 || word in left) continue;
      const range = document.createRange();
      range.setStart(node, at);
      range.setEnd(node, at + word.length);
      left[word] = range.getBoundingClientRect().left;
    }
  }
  return left;
}"""


async def assert_reads_left_to_right(page: Page, selector: str, words: list[str]) -> None:
    left = await page.evaluate(WORD_LEFT, [selector, words])
    assert list(left) == words, left
    assert [left[w] for w in words] == sorted(left[w] for w in words), (selector, left)


def raw_names(monkeypatch: Any) -> None:
    """Names as the user model has them, as a host's adapter may give them."""
    monkeypatch.setattr(SessionAdapter, "display_name", lambda self, user: user.first_name)
    monkeypatch.setattr(SessionAdapter, "operator_name", lambda self, user: user.first_name)


async def olga_with_an_override() -> Any:
    olga = await operator("olga")
    olga.first_name = "Olga" + RLO
    await db(olga.save)()
    return olga


async def isolation(page: Page, selector: str) -> list[str]:
    return await page.eval_on_selector(
        selector, "(node) => [node.tagName, getComputedStyle(node).unicodeBidi]"
    )


@browser_test
async def test_an_override_in_a_name_does_not_reverse_the_customers_page(
    browser, daphne, monkeypatch
):
    raw_names(monkeypatch)
    server = agent_server(daphne)
    olga = await olga_with_an_override()
    tab = await open_page(await new_context(browser, server))
    session_id = await start_chat(tab)
    await db(service.take_over)(session_id, olga)
    await db(service.operator_reply)(session_id, operator=olga, content="Hello, I can help.")

    page = tab.page
    await page.wait_for_selector("#banner[data-kind=human]", timeout=WAIT_MS)
    await page.wait_for_selector("#log li[data-role=operator]", timeout=WAIT_MS)
    # Without isolation the override reverses the whole rest of the banner.
    await assert_reads_left_to_right(
        page, "#banner", ["Olga", "from", "our", "team", "has", "taken", "over"]
    )
    assert await isolation(page, "#log li[data-role=operator] .author") == ["BDI", "isolate"]
    assert await isolation(page, "#log li[data-role=operator] .text") == ["DIV", "isolate"]
    no_trouble(tab)


@browser_test
async def test_an_override_in_a_name_does_not_reverse_the_console(browser, daphne, monkeypatch):
    raw_names(monkeypatch)
    server = agent_server(daphne)
    olga = await olga_with_an_override()
    await operator("omar")
    customer = await open_page(await new_context(browser, server))
    session_id = await start_chat(customer)
    await db(service.take_over)(session_id, olga)

    console = await open_console_page(browser, server, **DESKTOP)
    await log_in(console, "omar")
    await open_session(console, session_id)
    page = console.page
    await page.wait_for_selector("#control-badge:text('is answering')", timeout=WAIT_MS)
    await assert_reads_left_to_right(page, "#control-badge", ["Olga", "is", "answering"])
    await assert_reads_left_to_right(page, "#reply-hint", ["Taken", "by", "Olga"])
    no_trouble(console)
