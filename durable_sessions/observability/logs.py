"""Structured logs: the context a line is about, and a JSON formatter.

Each component logs under its own module's name (``durable_sessions.consumers``,
``durable_sessions.runtime.executor``, ``durable_sessions.service.deltas``, …). Code that
works for one session binds its ids once (:func:`bind`); :class:`ContextFilter` puts them
on every record logged from that task, and :class:`JsonFormatter` writes one JSON object
per line. Lines at INFO and above never carry message text or names.

Configure it in ``LOGGING`` (see docs/operations.md)::

    "filters": {"ds_context": {"()": "durable_sessions.observability.logs.ContextFilter"}},
    "formatters": {"json": {"()": "durable_sessions.observability.logs.JsonFormatter"}},
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# The fields a line may carry about what it concerns.
CONTEXT_FIELDS = ("session_id", "run_id", "participant", "seq", "worker")

# The bound fields as one flat tuple (field, value, field, value, ...) rather than a
# dict: every open connection binds its ids and keeps them, and such a tuple is less than
# half the size of a small dict.
_context: ContextVar[tuple[Any, ...]] = ContextVar("ds_log_context", default=())


def bind(**fields: Any) -> None:
    """Attach ``fields`` to every line logged from now on in this task (and the tasks and
    database calls it starts)."""
    merged = current()
    merged.update((k, v) for k, v in fields.items() if v is not None)
    _context.set(tuple(item for pair in merged.items() for item in pair))


def current() -> dict[str, Any]:
    """The fields bound in this context."""
    flat = _context.get()
    return dict(zip(flat[::2], flat[1::2], strict=True))


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (fields given with ``extra=`` win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields, and
    the exception's type and traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        bound = current()
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is None:
                value = bound.get(key)
            if value is not None:
                line[key] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = record.exc_info[0].__name__
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)
