"""Tools an agent declares: a Python callable, the JSON schema of its input, and whether a
person must approve a call first (and who).

::

    @tool(input_schema={"type": "object", "properties": {"order_id": {"type": "string"}},
                        "required": ["order_id"]})
    def order_status(order_id: str) -> dict:
        return {"status": "shipped"}

The runtime validates the model's input against the schema, calls the function (sync
functions on a thread, with the tool's timeout) and stores its result, or the error,
as the call's outcome.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Whether a call needs approval: a flag, or a function of the call's input.
ApprovalRule = bool | Callable[[dict[str, Any]], bool]
# Who answers: "any", "customer" or "operator", or a function of the call's input.
ApproversRule = str | Callable[[dict[str, Any]], str] | None


class ToolInputError(ValueError):
    """The model's input does not fit the tool's schema."""


@dataclass(frozen=True)
class ToolContext:
    """What a tool function may ask for with a parameter named ``context``: the session
    it acts in, the call, and who approved it (``{"kind", "display_name"}``, or None)."""

    session_id: str
    tool_call_id: str
    approved_by: dict[str, str] | None = None


@dataclass(frozen=True)
class Tool:
    """A callable the agent may ask the runtime to run.

    ``fn`` takes the input object's fields as keyword arguments (and, if it has a
    parameter named ``context``, a :class:`ToolContext`) and returns anything JSON can
    hold; it may be ``async``. ``requires_approval`` (a bool, or a function of
    the input) suspends the run until a person answers; ``approvers`` (``"any"``,
    ``"customer"``, ``"operator"``, or a function of the input) says who, else the
    adapter decides. ``timeout`` overrides ``TOOL_TIMEOUT`` (seconds). ``idempotent``
    says that calling it twice with the same input does no harm: a call cut off by a
    crash is then run again, else it is reported to the agent as of unknown outcome.
    """

    name: str
    fn: Callable[..., Any]
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    requires_approval: ApprovalRule = False
    approvers: ApproversRule = None
    timeout: float | None = None
    idempotent: bool = False

    def needs_approval(self, tool_input: dict[str, Any]) -> bool:
        rule = self.requires_approval
        return bool(rule(tool_input) if callable(rule) else rule)

    def approvers_for(self, tool_input: dict[str, Any]) -> str | None:
        rule = self.approvers
        return rule(tool_input) if callable(rule) else rule

    def validate(self, tool_input: Any) -> dict[str, Any]:
        """The input, checked against :attr:`input_schema`; raises :class:`ToolInputError`."""
        if not isinstance(tool_input, dict):
            raise ToolInputError("the input must be a JSON object")
        import jsonschema  # only when a tool is called

        try:
            jsonschema.validate(tool_input, self.input_schema)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            raise ToolInputError(f"{where + ': ' if where else ''}{exc.message}"[:500]) from None
        except jsonschema.SchemaError as exc:
            raise ToolInputError(f"the tool's schema is invalid: {exc.message}"[:500]) from None
        return tool_input

    def wants_context(self) -> bool:
        try:
            return "context" in inspect.signature(self.fn).parameters
        except (TypeError, ValueError):
            return False

    async def invoke(self, tool_input: dict[str, Any], context: ToolContext | None = None) -> Any:
        """Run the function (a sync one on a thread of its own); a function with a
        ``context`` parameter gets the :class:`ToolContext` there."""
        kwargs = dict(tool_input)
        if context is not None and self.wants_context():
            kwargs["context"] = context
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(**kwargs)
        result = await asyncio.to_thread(self.fn, **kwargs)
        if inspect.isawaitable(result):
            return await result
        return result

    def spec(self) -> dict[str, Any]:
        """The tool as a chat-completions ``tools`` entry."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.input_schema,
            },
        }


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    input_schema: dict[str, Any] | None = None,
    requires_approval: ApprovalRule = False,
    approvers: ApproversRule = None,
    timeout: float | None = None,
    idempotent: bool = False,
) -> Any:
    """Make a :class:`Tool` of a function (a decorator, with or without arguments); the
    name defaults to the function's, the description to its docstring."""

    def make(f: Callable[..., Any]) -> Tool:
        return Tool(
            name=name or f.__name__,
            fn=f,
            description=description if description is not None else inspect.getdoc(f) or "",
            input_schema=input_schema or {"type": "object"},
            requires_approval=requires_approval,
            approvers=approvers,
            timeout=timeout,
            idempotent=idempotent,
        )

    return make(fn) if fn is not None else make
