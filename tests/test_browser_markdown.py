"""AI and operator messages are rendered as markdown - lists, emphasis, code, links that open
in a new tab with rel="noopener noreferrer nofollow" - on the customer page and in the
console, and a list of hostile inputs stays inert there while the reply streams and after:
no script runs, no element carries an event handler, no link leads to javascript: or data:,
raw HTML shows as the text it is, and no image is fetched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from durable_sessions import service
from tests import services
from tests.test_browser_chat import (
    WAIT_MS,
    agent_server,
    browser_test,
    new_context,
    no_trouble,
    open_page,
    operator_named,
    screenshot,
    send,
    start_chat,
)
from tests.test_browser_console import log_in, open_session

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "durable_sessions" / "static" / "durable_sessions" / "vendor"

# Each tries to run code, to reach a dangerous URL, or to inject markup.
HOSTILE = [
    "<script>window.__pwned = 1</script>",
    "<img src=x onerror=window.__pwned=2>",
    "[click](javascript:window.__pwned=3)",
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[vb](vbscript:msgbox(1))",
    "[entity](jav&#x61;script:window.__pwned=4)",
    "[tab](java\tscript:window.__pwned=5)",
    "<javascript:window.__pwned=6>",
    "![pixel](https://tracker.invalid/p.png)",
    '<a href="javascript:window.__pwned=7">raw link</a>',
    "<svg onload=window.__pwned=8></svg>",
    '<iframe src="javascript:window.__pwned=9"></iframe>',
    "<details open ontoggle=window.__pwned=10>x</details>",
    "<style>body { display: none }</style>",
    '[titled](https://ok.example/ "t" onclick=window.__pwned=11)',
    "<<script>script>window.__pwned=12<</script>/script>",
    '<form action="javascript:window.__pwned=13"><button>go</button></form>',
    "`<b>code</b>`",
    "```\n<script>window.__pwned=14</script>\n```",
]
FRIENDLY = (
    "Here is **what to do**:\n\n- check the *parcel* number\n- call us\n\n"
    "Use `ORDER-7` and read [the help page](https://example.com/help)."
)
REPLY = FRIENDLY + "\n\n" + "\n\n".join(HOSTILE)

# What the page must never hold, whatever the text.
INERT = """root => {
  const bad = [];
  for (const e of root.querySelectorAll('*')) {
    // Inside rendered markdown only the renderer's own tags may appear.
    if (e.closest('.md') && !['A', 'BLOCKQUOTE', 'BR', 'CODE', 'DEL', 'EM', 'H1', 'H2', 'H3',
        'H4', 'H5', 'H6', 'HR', 'LI', 'OL', 'P', 'PRE', 'STRONG', 'TABLE', 'TBODY', 'TD', 'TH',
        'THEAD', 'TR', 'UL'].includes(e.tagName.toUpperCase()) && !e.classList.contains('md'))
      bad.push(e.tagName);
    for (const a of e.attributes) if (a.name.startsWith('on')) bad.push(e.tagName + ' ' + a.name);
    if (e.tagName === 'A') {
      const href = e.getAttribute('href') || '';
      if (!/^(https?:|mailto:|\\/(?!\\/)|#)/i.test(href)) bad.push('href ' + href);
      if (e.rel !== 'noopener noreferrer nofollow' || e.target !== '_blank')
        bad.push('rel ' + e.rel + ' ' + e.target);
    }
  }
  if (window.__pwned !== undefined) bad.push('ran ' + window.__pwned);
  return bad;
}"""


async def inert(page, selector: str) -> list[str]:
    return await page.eval_on_selector(selector, INERT)


async def rendered(page, selector: str) -> dict:
    return await page.eval_on_selector(
        selector,
        """e => ({
          items: [...e.querySelectorAll('li')].map(li => li.textContent),
          strong: [...e.querySelectorAll('strong')].map(s => s.textContent),
          code: [...e.querySelectorAll('code')].map(s => s.textContent),
          links: [...e.querySelectorAll('a')].map(a => [a.textContent, a.getAttribute('href')]),
          text: e.textContent,
        })""",
    )


def test_the_vendored_renderer_and_sanitizer_are_the_pinned_npm_builds():
    """The files served are npm's builds of tests/package.json's versions (less the source
    map comment), with their licences."""
    modules = Path(services.NODE_MODULES)
    if not (modules / "marked").exists():
        pytest.skip("npm packages not installed (npm ci --prefix tests)")
    for served, source in (
        ("marked.esm.js", "marked/lib/marked.esm.js"),
        ("purify.es.js", "dompurify/dist/purify.es.mjs"),
    ):
        built = (modules / source).read_text().rstrip()
        built = built.rsplit("\n//# sourceMappingURL=", 1)[0]
        assert (VENDOR / served).read_text().rstrip() == built.rstrip(), served
    assert "MIT" in (VENDOR / "marked.LICENSE").read_text()
    assert "Apache License" in (VENDOR / "dompurify.LICENSE").read_text()
    assert os.path.exists(VENDOR / "purify.es.js")


@browser_test
async def test_markdown_renders_and_hostile_input_stays_inert_while_streaming_and_after(
    browser, daphne
):
    server = agent_server(daphne, reply=REPLY, tokens_per_second=60)
    context = await new_context(browser, server)
    tab = await open_page(context)
    failed: list[str] = []
    tab.page.on("request", lambda r: "tracker.invalid" in r.url and failed.append(r.url))
    session_id = await start_chat(tab)
    page = tab.page
    await send(page, "help")

    reply = "#log li[data-role=assistant] .text"
    # While it streams: checked again and again until it completes.
    streaming = "#log li[data-role=assistant][data-state=streaming] .text"
    seen_streaming = 0
    while not await page.locator("#log li[data-role=assistant][data-state=complete]").count():
        if await page.locator(streaming).count():
            assert await inert(page, reply) == []
            seen_streaming += 1
        await page.wait_for_timeout(50)
    assert seen_streaming  # checked mid-stream, not only at the end
    assert await inert(page, "#log") == []
    shown = await rendered(page, reply)
    assert shown["items"][:2] == ["check the parcel number", "call us"]
    assert shown["strong"] == ["what to do"]
    assert "ORDER-7" in shown["code"] and "<b>code</b>" in shown["code"]
    assert ["the help page", "https://example.com/help"] in shown["links"]
    # Raw HTML is shown as the text it is.
    assert "<script>window.__pwned = 1</script>" in shown["text"]
    assert '<a href="javascript:window.__pwned=7">raw link</a>' in shown["text"]

    # An operator's markdown, in the customer's page and in the console.
    olga = await operator_named("olga", "Olga")
    note = "Done:\n\n1. refund **sent**\n2. [track it](/orders/7)\n\n" + HOSTILE[1]
    await service.aoperator_reply(session_id, operator=olga, content=note, client_id="op-1")
    await page.wait_for_selector("#log li[data-role=operator] .text ol li", timeout=WAIT_MS)
    assert await inert(page, "#log") == []
    await page.reload()
    await page.wait_for_selector("#chat[data-status=live]", timeout=WAIT_MS)
    await page.wait_for_selector("#log li[data-role=operator] .text ol li", timeout=WAIT_MS)
    assert await inert(page, "#log") == []
    await screenshot(page, "markdown-customer")

    console_context = await browser.new_context(base_url=server.http)
    console = await open_page(console_context)
    await log_in(console, "olga")
    await open_session(console, session_id)
    await console.page.wait_for_selector("#transcript li.role-operator .body ol li")
    assert await inert(console.page, "#transcript") == []
    shown = await rendered(console.page, "#transcript li.role-assistant .body")
    assert shown["strong"] == ["what to do"]
    links = await rendered(console.page, "#transcript li.role-operator .body")
    assert links["links"] == [["track it", "/orders/7"]]
    # Customers' own text stays exactly as typed, markdown or not.
    assert await console.page.text_content("#transcript li.role-user .body") == "help"
    await screenshot(console.page, "markdown-console")
    assert failed == []  # the image was never fetched
    no_trouble(tab, console)
    await context.close()
    await console_context.close()
