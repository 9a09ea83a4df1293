"""Executing an agent's tool calls: validate, ask for approval or run, store the outcome.

A call is moved to ``running`` in a committed write before its function is called, and a
call found ``running`` when a run continues is never called again (it ends in ``error``,
its outcome unknown) unless its tool declares itself ``idempotent``: a tool with side
effects runs at most once per call, across retries, crashes and resumes.
Whatever the function raises, or a timeout, becomes the call's ``error``; the run goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.utils import timezone

from durable_sessions.adapter import get_adapter
from durable_sessions.agents import Agent
from durable_sessions.agents.tools import Tool, ToolContext, ToolInputError
from durable_sessions.app_settings import ds_settings
from durable_sessions.models import Approvers, MessagePart, PartState
from durable_sessions.observability import tracing
from durable_sessions.runtime.reply import PendingCall
from durable_sessions.service import parts
from durable_sessions.service.transient import retrying

logger = logging.getLogger(__name__)
# The error of a call that was running when its worker was lost (see docs/agents.md).
OUTCOME_UNKNOWN = (
    "outcome unknown: the assistant was interrupted while the tool ran; "
    "it may or may not have completed"
)
db = database_sync_to_async
Announce = Callable[[str, str | None], Awaitable[None]]


class ToolCalls:
    """Settles the tool calls of one run's steps."""

    def __init__(self, run_id: int, session_id: Any, agent: Agent, announce: Announce) -> None:
        self.run_id = run_id
        self.session_id = session_id
        self.agent = agent
        self.announce = announce

    async def settle(self, calls: list[PendingCall]) -> None:
        """Give each call of a step its next state, running those that need no approval."""
        for call in calls:
            part = await self._ready(call)
            if part.state == PartState.RUNNING:
                await self._execute(part)

    async def run_approved(self, message_id: int) -> None:
        """Run the reply's approved calls; a call left ``running`` by a worker that died
        is not run again."""
        for part in await db(parts.reply_parts)(message_id):
            if part.type != "tool_call":
                continue
            if part.state == PartState.RUNNING:
                tool = self.agent.tool_named(part.tool_name)
                if tool is not None and tool.idempotent:
                    await self._execute(part)  # harmless to call again
                    continue
                await self._write(parts.finish_tool, part.pk, error=OUTCOME_UNKNOWN)
            elif part.state == PartState.APPROVED:
                started = await retrying(
                    lambda pk=part.pk: db(parts.start_tool)(pk), f"run {self.run_id}: start tool"
                )
                if started:
                    await self._execute(part)

    async def _ready(self, call: PendingCall) -> MessagePart:
        tool = self.agent.tool_named(call.name)
        error, approvers = call.error, ""
        tool_input = call.input
        if not error and tool is None:
            error = f"unknown tool {call.name!r}"
        if not error and tool is not None:
            try:
                tool_input = tool.validate(call.input)
                if tool.needs_approval(tool_input):
                    approvers = await self._approvers(tool, tool_input)
            except ToolInputError as exc:
                error = f"invalid input: {exc}"
            except Exception as exc:  # the host's policy failed: do not run the call
                logger.warning("approval policy of %s failed: %s", call.name, exc, exc_info=True)
                error = "the approval policy failed"
        expires = (
            timezone.now() + timedelta(seconds=ds_settings.APPROVAL_TIMEOUT) if approvers else None
        )
        return await self._write(
            parts.tool_input_ready,
            call.pk,
            tool_input,
            approvers=approvers,
            expires_at=expires,
            error=error,
        )

    async def _approvers(self, tool: Tool, tool_input: dict[str, Any]) -> str:
        chosen = tool.approvers_for(tool_input)
        if chosen is None:
            chosen = await db(get_adapter().approvers)(self.session_id, tool.name, tool_input)
        if chosen not in Approvers.values:
            raise ValueError(f"approvers must be one of {', '.join(Approvers.values)}")
        return chosen

    async def _execute(self, part: MessagePart) -> None:
        tool = self.agent.tool_named(part.tool_name)
        if tool is None:  # the agent no longer declares it (a new deployment)
            await self._write(parts.finish_tool, part.pk, error=f"unknown tool {part.tool_name!r}")
            return
        await self.announce("calling_tool", tool.name)
        timeout = tool.timeout if tool.timeout is not None else ds_settings.TOOL_TIMEOUT
        try:
            context = ToolContext(
                session_id=str(self.session_id),
                tool_call_id=part.tool_call_id,
                approved_by=(
                    {"kind": part.decided_by.kind, "display_name": part.decided_by.display_name}
                    if part.decided_by is not None
                    else None
                ),
            )
            with tracing.span(
                "ds.tool_call", session_id=str(self.session_id), run_id=self.run_id, tool=tool.name
            ):
                result = await asyncio.wait_for(
                    tool.invoke(dict(part.input or {}), context), timeout
                )
            output = json.loads(json.dumps(result, default=str))
        except TimeoutError:
            await self._write(
                parts.finish_tool, part.pk, error=f"the tool did not answer within {timeout:g} s"
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.info("tool %s of run %s failed: %s", tool.name, self.run_id, exc)
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            await self._write(parts.finish_tool, part.pk, error=text)
        else:
            await self._write(parts.finish_tool, part.pk, output=output)
        await self.announce("thinking", None)  # the agent reads the result next

    async def _write(self, fn: Callable[..., MessagePart], *args: Any, **kwargs: Any) -> Any:
        return await retrying(
            lambda: db(fn)(*args, **kwargs), f"run {self.run_id}: {fn.__name__.replace('_', ' ')}"
        )
