"""The product's adapter: its own name for the AI, the package's access rules otherwise."""

from __future__ import annotations

from durable_sessions.adapter import SessionAdapter
from durable_sessions.models import DurableSession


class HostSessionAdapter(SessionAdapter):
    """Names the AI participant after the product."""

    def agent_name(self, session: DurableSession) -> str:
        return "Host assistant"
