"""The complete tool example of docs/agents.md runs as written."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
from channels.db import database_sync_to_async

from durable_sessions import service
from durable_sessions.models import RunStatus
from tests.factories import anonymous_session
from tests.fake_openai import FakeChatServer
from tests.test_runtime import running_worker, runtime_settings
from tests.test_turns import latest_reply, reply_parts, run_status, wait_for

DOC = Path(__file__).resolve().parent.parent / "docs" / "agents.md"
MODULE = "docs_support_agent"
db = database_sync_to_async


def load_example() -> types.ModuleType:
    """The page's ``myproject/support_agent.py`` block, imported as a module."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    (source,) = [b for b in blocks if b.startswith('"""myproject/support_agent.py"""')]
    module = types.ModuleType(MODULE)
    sys.modules[MODULE] = module
    exec(compile(source, str(DOC), "exec"), module.__dict__)
    return module


@pytest.mark.django_db(transaction=True)
async def test_the_documented_tool_example_runs_with_an_approval(settings):
    example = load_example()
    calls = [
        ("c1", "check_stock", '{"sku": "SKU-1"}'),
        ("c2", "reserve_items", '{"sku": "SKU-1", "quantity": 2}'),
    ]
    async with FakeChatServer(["Reserved", " two."], mode="tools", tool_calls=calls) as server:
        runtime_settings(
            settings,
            AGENT=f"{MODULE}.SupportAgent",
            AGENT_OPTIONS={"base_url": server.base_url, "model": "m", "api_key": ""},
        )
        async with running_worker("w"):
            session, _ = await db(anonymous_session)()
            await db(service.post_customer_message)(session.id, "two of SKU-1, please")
            await wait_for(lambda: run_status() == RunStatus.AWAITING)
            (waiting,) = [p for p in await reply_parts() if p.state == "awaiting-approval"]
            assert (waiting.tool_name, waiting.approvers) == ("reserve_items", "any")
            await db(service.answer_approval)(session.id, waiting.wire_id, approved=True)
            await wait_for(lambda: run_status() == RunStatus.COMPLETED)
    reply = await latest_reply()
    parts = await reply_parts()
    assert [(p.tool_name, p.state) for p in parts if p.type == "tool_call"] == [
        ("check_stock", "done"),
        ("reserve_items", "done"),
    ]
    assert parts[0].output == {"sku": "SKU-1", "in_stock": 12}
    assert example.STOCK["SKU-1"] == 10  # reserved once
    assert reply.content == "Reserved two."
    assert example.reservation_approvers({"quantity": 11}) == "operator"
