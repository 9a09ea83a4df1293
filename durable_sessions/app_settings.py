"""The ``DURABLE_SESSIONS`` setting: every key, its default, type and meaning, in one table.

Read it as ``from durable_sessions.app_settings import ds_settings`` and
``ds_settings.FLUSH_INTERVAL_MS`` (a float). Values are validated on first read, typed
(no casts needed), cached, and reloaded when Django's ``setting_changed`` fires for
``DURABLE_SESSIONS``; class paths (``ADAPTER``, ``AGENT``) come back imported.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any

from durable_sessions.conf import AppSettings, Bool, ClassPath, Dict, Float, Int, Str

SETTING_NAME = "DURABLE_SESSIONS"


class DurableSessionsSettings(AppSettings):
    """The keys of ``DURABLE_SESSIONS``; see docs/settings.md for the longer story."""

    setting_name = SETTING_NAME
    check_id = "durable_sessions.E001"

    # --- access and naming ---
    # A durable_sessions.adapter.SessionAdapter subclass (not imported here: the adapter
    # module reads these settings).
    ADAPTER: ClassPath[type[Any]] = ClassPath(
        "durable_sessions.adapter.SessionAdapter",
        "the adapter that decides who may open a session and how people are named",
    )
    OPERATOR_PERMISSION = Str(
        "durable_sessions.operate_sessions",
        "the permission (app_label.codename) that makes a user an operator",
    )
    STAFF_ARE_OPERATORS = Bool(
        False, "staff users count as operators without the permission (reads every session)"
    )
    OPERATOR_ALIAS = Str(
        "Support",
        "the name customers see for an operator without a full name (never a login or e-mail)",
    )
    # --- websocket transport ---
    MAX_FRAME_BYTES = Int(64 * 1024, "largest client frame accepted, in bytes", positive=True)
    MAX_MESSAGE_CHARS = Int(16_000, "longest message text accepted, in characters", positive=True)
    RATE_LIMIT_FRAMES = Int(
        30, "client frames allowed per connection per RATE_LIMIT_WINDOW", positive=True
    )
    RATE_LIMIT_WINDOW = Float(10.0, "seconds of the rate-limit window", positive=True)
    REPLAY_PAGE_SIZE = Int(1000, "events read per query when replaying", positive=True)
    # The channel layer may drop wake-ups; the database never does.
    RESYNC_INTERVAL = Float(
        2.0, "seconds between checks that no connection missed an event", positive=True
    )
    # Full garbage collections at thousands of connections stop the loop (delivery/heap.py).
    GC_FREEZE_CONNECTIONS = Bool(
        True, "freeze the objects of open connections so that full collections skip them"
    )
    GROUP_PREFIX = Str("ds", "prefix of channel-layer group names and presence keys")
    PROCESSES = Int(
        1, "server processes this deployment runs (for the system checks)", positive=True
    )
    # --- agent runtime ---
    AGENT: ClassPath[type[Any]] = ClassPath(
        "durable_sessions.agents.demo.DemoAgent", "the agent class, one instance per run"
    )
    AGENT_OPTIONS = Dict({}, "keyword arguments for the agent's constructor")
    RUNNER = Str(
        "embedded",
        "where runs execute: in the server processes, or only in `run_agents` workers",
        choices=("embedded", "worker"),
    )
    FLUSH_INTERVAL_MS = Float(
        40.0, "milliseconds a reply's buffered text waits before it is written", positive=True
    )
    FLUSH_MAX_CHARS = Int(256, "buffered characters that are written at once", positive=True)
    GROUP_COMMIT_INTERVAL_MS = Float(
        5.0,
        "milliseconds at least between the starts of two group commits of deltas",
        positive=True,
        zero_is_off=True,
    )
    LEASE_TIMEOUT = Float(15.0, "seconds a run's lease lasts without renewal", positive=True)
    HEARTBEAT_INTERVAL = Float(3.0, "seconds between renewals of a run's lease", positive=True)
    ESCALATE_ON_CRASH = Bool(True, "move a session whose agent crashed to the human queue")
    RUN_MAX_ATTEMPTS = Int(
        2, "attempts of a run whose worker died before its reply fails and escalates", positive=True
    )
    DRAIN_GRACE = Float(
        10.0,
        "seconds a stopping worker lets its runs finish before handing them back (0: at once)",
        positive=True,
        zero_is_off=True,
    )
    AGENT_IDLE_TIMEOUT = Float(
        60.0, "fail a reply when the agent yields nothing for this long", positive=True
    )
    HISTORY_LIMIT = Int(50, "messages of history given to the agent", positive=True)
    DEFAULT_SEND_MODE = Str(
        "queue",
        "how a customer's message sent while the agent answers is taken, unless the message "
        "or the session's metadata `send_mode` says otherwise",
        choices=("queue", "steer", "interrupt"),
    )
    MAX_AGENT_STEPS = Int(
        8, "steps (model calls between tool calls) of one run before its reply ends", positive=True
    )
    TOOL_TIMEOUT = Float(30.0, "seconds a tool may run before its call fails", positive=True)
    APPROVAL_TIMEOUT = Float(
        900.0, "seconds a tool call waits for approval before it is denied", positive=True
    )
    APPROVERS = Str(
        "any",
        "who answers a tool call's approval unless its tool or the adapter says",
        choices=("any", "customer", "operator"),
    )
    MAX_CONCURRENT_RUNS = Int(
        100,
        "runs one worker executes at once (its fair share of the live workers' runs is less)",
        positive=True,
    )
    RUN_SWEEP_INTERVAL = Float(
        2.0, "seconds between sweeps for expired leases and lost runs", positive=True
    )
    RUN_CHANNEL = Str("ds-agent-runs", "channel on which new runs are announced to workers")
    # --- the event log ---
    COMPACT_AFTER = Float(
        300.0,
        "seconds after a reply ends before its deltas are folded into message.snapshot "
        "events by the runtime's background task (0: off; `compact_events` still works)",
        positive=True,
        zero_is_off=True,
    )
    COMPACT_INTERVAL = Float(
        60.0, "seconds between the runtime's passes that compact finished replies", positive=True
    )
    PREPARED_STATEMENTS = Bool(
        True, "(PostgreSQL) the group commit's statements are prepared once per connection"
    )
    # --- presence ---
    PRESENCE_BACKEND = Str("auto", "where presence lives", choices=("auto", "memory", "redis"))
    PRESENCE_REDIS_URL = Str("", "Redis URL for presence; empty: the channel layer's first host")
    PRESENCE_HEARTBEAT = Float(
        15.0, "seconds between refreshes of a process's presence entries", positive=True
    )
    PRESENCE_TTL = Float(40.0, "seconds an entry lives without a refresh", positive=True)
    PRESENCE_SWEEP = Float(
        2.0, "seconds between checks for expired presence and typing", positive=True
    )
    TYPING_TIMEOUT = Float(15.0, "seconds after which 'typing' ends unless renewed", positive=True)
    # --- limits per visitor, user and IP (0 turns a limit off; operators are exempt) ---
    LIMIT_CONNECTIONS_PER_VISITOR = Int(
        20, "websocket connections one user or visitor keeps open", positive=True, zero_is_off=True
    )
    LIMIT_CONNECTIONS_PER_SESSION = Int(
        10,
        "websocket connections one user or visitor keeps open to one session",
        positive=True,
        zero_is_off=True,
    )
    LIMIT_CONNECTIONS_PER_IP = Int(
        200, "websocket connections open from one IP address", positive=True, zero_is_off=True
    )
    LIMIT_LONG_POLLS_PER_VISITOR = Int(
        20, "long polls one user or visitor keeps waiting at once", positive=True, zero_is_off=True
    )
    LIMIT_MESSAGES_PER_MINUTE = Int(
        30,
        "messages one user or visitor posts per minute, websocket and HTTP together",
        positive=True,
        zero_is_off=True,
    )
    LIMIT_MESSAGES_PER_MINUTE_PER_IP = Int(
        60, "messages posted per minute from one IP address", positive=True, zero_is_off=True
    )
    LIMIT_SESSIONS_PER_HOUR = Int(
        20, "sessions one user or visitor creates per hour", positive=True, zero_is_off=True
    )
    LIMIT_SESSIONS_PER_HOUR_PER_IP = Int(
        60, "sessions created per hour from one IP address", positive=True, zero_is_off=True
    )
    # Presence pushes of one session go to all its connections: N changes at once would
    # cost N x N frames without this.
    PRESENCE_COALESCE_MS = Float(
        250.0,
        "milliseconds over which a session's presence changes are pushed as one",
        positive=True,
        zero_is_off=True,
    )
    # --- devices and browsers ---
    DEVICE_LINK_TTL = Float(
        600.0, "seconds a 'continue on another device' link can be opened", positive=True
    )
    DEVICE_GRANTS_PER_SESSION = Int(
        3, "device links of one session in use or waiting to be opened, at most", positive=True
    )
    DEVICE_LINK_URL = Str(
        "",
        "path of the host's page that opens a device link, with {token}; empty: the API "
        "returns the token only",
    )
    CLIENT_STORAGE = Bool(
        True, "pages let client.js keep transcripts in the browser's localStorage"
    )
    CONTENT_SECURITY_POLICY = Str(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
        "frame-ancestors 'none'",
        "the Content-Security-Policy header of ContentSecurityPolicyMiddleware",
    )
    CONTENT_SECURITY_POLICY_REPORT_ONLY = Bool(
        False, "send the policy as Content-Security-Policy-Report-Only (report, not block)"
    )
    # --- connections: memory, access, exits ---
    MAX_SEND_BUFFER_BYTES = Int(
        256 * 1024,
        "bytes a connection may have waiting to be sent before the server pauses it",
        positive=True,
    )
    SLOW_CLIENT_TIMEOUT = Float(
        30.0, "seconds a paused connection may take to drain before it is closed", positive=True
    )
    REPLAY_PAGE_BYTES = Int(
        256 * 1024,
        "bytes of events read from the database at once (at least one event)",
        positive=True,
    )
    RECHECK_ACCESS_SECONDS = Float(
        5.0,
        "a connection re-reads its access before a state-changing frame at most this often",
        positive=True,
    )

    # --- retention and erasure (docs/operations.md) ---
    RETAIN_CLOSED_DAYS = Float(
        0.0,
        "days a closed session and its log are kept before ds_retention deletes them "
        "(0: kept for ever)",
        positive=True,
        zero_is_off=True,
    )
    RETENTION_BATCH_SIZE = Int(
        100, "sessions archived and deleted per transaction by retention and erasure", positive=True
    )
    # --- operations: metrics, health, tracing (docs/operations.md) ---
    METRICS_ENABLED = Bool(True, "record Prometheus metrics (when prometheus_client is installed)")
    METRICS_TOKEN = Str(
        "", "bearer token that lets a scraper read the metrics endpoint from any address"
    )
    METRICS_ALLOWED_IPS = Str(
        "127.0.0.1/32, ::1/128",
        "addresses or networks (comma-separated) that may read the metrics endpoint",
    )
    METRICS_STATE_CACHE_SECONDS = Float(
        10.0,
        "seconds the metrics read from the database are reused between scrapes",
        positive=True,
    )
    HEALTH_CHECK_TIMEOUT = Float(
        2.0,
        "seconds each readiness check (database, channel layer, Redis) may take",
        positive=True,
    )
    TRACING = Bool(False, "emit OpenTelemetry spans (when opentelemetry-api is installed)")
    # --- the Durable Streams protocol (docs/durable-streams.md) ---
    STREAMS_ACCESS = Str(
        "staff",
        "who may create, append to, read and delete generic streams ('off': not served)",
        choices=("off", "staff", "authenticated", "anyone"),
    )
    STREAMS_PREFIX = Str("v1/stream/", "URL path under which generic streams are served")
    SESSION_STREAMS_PREFIX = Str(
        "v1/session/", "URL path under which each session is readable as a JSON stream"
    )
    STREAMS_LONG_POLL_TIMEOUT = Float(
        20.0, "seconds a long poll waits for new data before answering 204", positive=True
    )
    STREAMS_SSE_MAX_SECONDS = Float(
        60.0, "seconds after which an SSE response ends (the client reconnects)", positive=True
    )
    STREAMS_MAX_APPEND_BYTES = Int(
        8 * 1024 * 1024, "largest body of one create or append, in bytes", positive=True
    )
    STREAMS_READ_BYTES = Int(
        1024 * 1024, "bytes of a stream read at once (at least one append)", positive=True
    )
    STREAMS_CORS_ORIGIN = Str(
        "*", "Access-Control-Allow-Origin of stream responses; empty: no CORS headers"
    )

    # --- the AI SDK's UI message stream endpoints (docs/aisdk.md) ---
    AISDK_PREFIX = Str(
        "ai/", "path, under the app's URLs, of the AI SDK endpoints (chat, chat/<id>/stream)"
    )
    AISDK_STREAM_MAX_SECONDS = Float(
        300.0,
        "seconds after which an AI SDK answer stream ends unfinished (the client resumes)",
        positive=True,
    )

    def rules(self, values: Mapping[str, Any]) -> Iterator[str]:
        if values["HEARTBEAT_INTERVAL"] * 2 > values["LEASE_TIMEOUT"]:
            yield (
                "HEARTBEAT_INTERVAL must be at most half of LEASE_TIMEOUT, or a slow "
                "network could make a live agent look crashed."
            )
        if values["PRESENCE_HEARTBEAT"] * 2 > values["PRESENCE_TTL"]:
            yield (
                "PRESENCE_HEARTBEAT must be at most half of PRESENCE_TTL, or people who "
                "are here would blink offline."
            )
        if values["DEVICE_LINK_URL"] and "{token}" not in values["DEVICE_LINK_URL"]:
            yield "DEVICE_LINK_URL must contain {token}, where the link's token goes."
        for network in _networks(values["METRICS_ALLOWED_IPS"]):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                yield (
                    f"METRICS_ALLOWED_IPS: {network!r} is not an address or network "
                    "(e.g. 10.0.0.0/8)."
                )
        for key in ("STREAMS_PREFIX", "SESSION_STREAMS_PREFIX"):
            prefix = values[key]
            if not prefix.endswith("/") or prefix.startswith("/"):
                yield f"{key} must be a path like 'v1/stream/': no leading '/', a trailing '/'."
        if values["STREAMS_PREFIX"] == values["SESSION_STREAMS_PREFIX"]:
            yield "STREAMS_PREFIX and SESSION_STREAMS_PREFIX must differ."
        app_label, _, codename = values["OPERATOR_PERMISSION"].partition(".")
        if not app_label or not codename:
            yield (
                "OPERATOR_PERMISSION must be 'app_label.codename', not "
                f"{values['OPERATOR_PERMISSION']!r}."
            )


def _networks(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def metrics_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The networks of ``METRICS_ALLOWED_IPS``, parsed."""
    return [
        ipaddress.ip_network(n, strict=False) for n in _networks(ds_settings.METRICS_ALLOWED_IPS)
    ]


ds_settings = DurableSessionsSettings()
