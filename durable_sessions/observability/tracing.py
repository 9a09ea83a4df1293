"""OpenTelemetry spans, when ``opentelemetry-api`` is installed (the ``[otel]`` extra) and
``TRACING`` is on; otherwise :func:`span` is a shared do-nothing context manager.

The app only creates spans through the API; the host project configures the SDK and an
exporter (see docs/operations.md), as OpenTelemetry intends for libraries. Spans carry
the session id (``ds.session_id``) and, for runs, the run id, so that a trace shows where
a slow answer spent its time: the run, the agent's stream, each group commit, the HTTP
request or websocket connection that started it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from durable_sessions.app_settings import ds_settings

try:
    from opentelemetry import trace as _trace
except ImportError:  # the [otel] extra is not installed
    _trace = None  # type: ignore[assignment]

AVAILABLE = _trace is not None
TRACER_NAME = "durable_sessions"

_NOTHING = contextlib.nullcontext()


class _Switch:
    value: bool | None = None


_switch = _Switch()


def enabled() -> bool:
    on = _switch.value
    if on is None:
        on = _switch.value = AVAILABLE and ds_settings.TRACING
    return on


@ds_settings.on_reload
def _forget() -> None:
    _switch.value = None


def _attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """OpenTelemetry accepts str, bool, int and float values; the rest become text."""
    found: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        name = key if "." in key else f"ds.{key}"
        found[name] = value if isinstance(value, str | bool | int | float) else str(value)
    return found


@contextlib.contextmanager
def _span(name: str, attributes: dict[str, Any]) -> Iterator[Any]:
    tracer = _trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(name, attributes=_attributes(attributes)) as current:
        yield current


def span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """``with span("ds.run", session_id=..., run_id=...):`` records the block as a span
    (an exception in it is recorded too); nothing at all when tracing is off."""
    if not enabled():
        return _NOTHING
    return _span(name, attributes)
