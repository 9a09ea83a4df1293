"""System checks for the misconfigurations a host project can make."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from durable_sessions.app_settings import SETTING_NAME, ds_settings

IN_MEMORY_LAYERS = (
    "channels.layers.InMemoryChannelLayer",
    "durable_sessions.delivery.layers.LocalChannelLayer",
)
REDIS_CORE_LAYER = "channels_redis.core.RedisChannelLayer"


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    # Validated afresh (class paths imported), so that a check never trusts the cache.
    errors: list[Any] = ds_settings.check()
    required = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"]
    for app in required:
        if app not in settings.INSTALLED_APPS:
            errors.append(
                Error(
                    f"{app} must be in INSTALLED_APPS: sessions are owned by users or "
                    "by anonymous browser sessions.",
                    id="durable_sessions.E002",
                )
            )
    return errors


@register()
def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    default = layers.get("default")
    if not default or not default.get("BACKEND"):
        return [
            Error(
                "No default channel layer is configured: live delivery needs one.",
                hint="Set CHANNEL_LAYERS['default'] (InMemoryChannelLayer for one process, "
                "channels_redis for several).",
                id="durable_sessions.E003",
            )
        ]
    backend = default["BACKEND"]
    messages: list[Any] = []
    try:
        processes = ds_settings.PROCESSES
    except ImproperlyConfigured:
        return messages  # reported by check_settings
    if backend in IN_MEMORY_LAYERS and processes > 1:
        messages.append(
            Error(
                f"{SETTING_NAME}['PROCESSES'] is {processes} but the channel layer is "
                "in-memory: processes would not see each other's events live.",
                hint="Use channels_redis (RedisPubSubChannelLayer) with several processes.",
                id="durable_sessions.E004",
            )
        )
    if backend == REDIS_CORE_LAYER:
        messages.append(
            Warning(
                "RedisChannelLayer drops group messages silently past its capacity; "
                "durable sessions recover from the database, but only after a gap or the "
                "periodic resync, which adds latency.",
                hint="Prefer channels_redis.pubsub.RedisPubSubChannelLayer.",
                id="durable_sessions.W005",
            )
        )
    return messages


@register(deploy=False)
def check_database(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    messages: list[Any] = []
    for alias, config in settings.DATABASES.items():
        engine = config.get("ENGINE", "")
        if engine.endswith("sqlite3"):
            mode = (config.get("OPTIONS") or {}).get("transaction_mode")
            if str(mode).upper() != "IMMEDIATE":
                messages.append(
                    Warning(
                        f"DATABASES[{alias!r}] is SQLite without "
                        "OPTIONS['transaction_mode'] = 'IMMEDIATE': concurrent appends can "
                        "fail with 'database is locked'.",
                        id="durable_sessions.W006",
                    )
                )
        elif engine.endswith("postgresql") and config.get("CONN_MAX_AGE"):
            if getattr(settings, "ASGI_APPLICATION", None):
                messages.append(
                    Warning(
                        f"DATABASES[{alias!r}]['CONN_MAX_AGE'] is set under ASGI: Django "
                        "advises persistent connections off there (each may stay open per "
                        "thread).",
                        id="durable_sessions.W007",
                    )
                )
    return messages


def _wraps_runner(application: Any, runner: type, depth: int = 8) -> bool:
    """Whether ``application`` is a ``runner`` or wraps one through ``app``/``inner``."""
    for _ in range(depth):
        if isinstance(application, runner):
            return True
        application = getattr(application, "app", None) or getattr(application, "inner", None)
        if application is None:
            return False
    return False


@register()
def check_embedded_runner(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """With RUNNER "embedded", the ASGI application must run the embedded worker."""
    path = getattr(settings, "ASGI_APPLICATION", None)
    try:
        runner = ds_settings.RUNNER
    except ImproperlyConfigured:
        return []  # reported by check_settings
    if runner != "embedded" or not path:
        return []
    from django.utils.module_loading import import_string

    from durable_sessions.runtime import embedded

    try:
        application = import_string(path)  # building it constructs its EmbeddedRunner
    except Exception:  # the host's own import error is reported where it happens
        return []
    # The application is the runner or wraps it; a wrapper that hides its inner app is
    # trusted when this process constructed a runner (the module may be imported already).
    if _wraps_runner(application, embedded.EmbeddedRunner) or embedded.EmbeddedRunner.constructed:
        return []
    return [
        Warning(
            f"DURABLE_SESSIONS['RUNNER'] is 'embedded' but {path} is not wrapped in "
            "durable_sessions.runtime.embedded.EmbeddedRunner: no agent run will execute.",
            hint="Wrap the application (see docs/install.md), or run `manage.py run_agents` "
            "processes with RUNNER 'worker'.",
            id="durable_sessions.W008",
        )
    ]


@register()
def check_staff_are_operators(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Staff status is for the Django admin; an operator reads every conversation."""
    try:
        staff_are_operators = ds_settings.STAFF_ARE_OPERATORS
    except ImproperlyConfigured:
        return []  # reported by check_settings
    if not staff_are_operators:
        return []
    return [
        Warning(
            f"{SETTING_NAME}['STAFF_ARE_OPERATORS'] is True: every staff user is an operator "
            "who reads every session and every private note.",
            hint="Leave it False and grant OPERATOR_PERMISSION (manage.py grant_console) to "
            "the people who answer customers.",
            id="durable_sessions.W020",
        )
    ]


@register(deploy=True)
def check_open_streams(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Generic Durable Streams open to anyone: any visitor can create, fill and delete them."""
    try:
        rule = ds_settings.STREAMS_ACCESS
    except ImproperlyConfigured:
        return []  # reported by check_settings
    if rule != "anyone":
        return []
    return [
        Warning(
            f"{SETTING_NAME}['STREAMS_ACCESS'] is 'anyone': anybody who can reach the site can "
            "create, append to, read and delete generic Durable Streams.",
            hint="Use 'staff' or 'authenticated' (or an adapter's may_use_streams), or 'off'.",
            id="durable_sessions.W031",
        )
    ]


CSP_MIDDLEWARES = (
    "durable_sessions.csp.ContentSecurityPolicyMiddleware",
    # Django 6.0's own.
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
)
UNSAFE_SOURCES = ("'unsafe-inline'", "'unsafe-eval'", "*")


@register(deploy=True)
def check_content_security_policy(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Message text is untrusted: a policy without inline scripts is the second line."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    if not any(name in middleware for name in CSP_MIDDLEWARES):
        return [
            Warning(
                "No Content-Security-Policy middleware is installed: pages that show "
                "customer and agent text have no second line of defence against injected "
                "script.",
                hint="Add 'durable_sessions.csp.ContentSecurityPolicyMiddleware' to "
                "MIDDLEWARE (see docs/security.md).",
                id="durable_sessions.W021",
            )
        ]
    if "durable_sessions.csp.ContentSecurityPolicyMiddleware" not in middleware:
        return []  # Django's own: configured with its own settings
    try:
        policy = ds_settings.CONTENT_SECURITY_POLICY
        report_only = ds_settings.CONTENT_SECURITY_POLICY_REPORT_ONLY
    except ImproperlyConfigured:
        return []  # reported by check_settings
    sources = policy.split()
    weak = [s for s in UNSAFE_SOURCES if s in sources]
    if not policy.strip():
        problem = "is empty: no policy is sent"
    elif weak:
        problem = f"allows {', '.join(weak)}"
    elif report_only:
        problem = "is only reported (CONTENT_SECURITY_POLICY_REPORT_ONLY), not enforced"
    else:
        return []
    return [
        Warning(
            f"{SETTING_NAME}['CONTENT_SECURITY_POLICY'] {problem}.",
            hint="Keep the default policy, or one without 'unsafe-inline'.",
            id="durable_sessions.W022",
        )
    ]


@register(deploy=True)
def check_allowed_hosts(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Channels' AllowedHostsOriginValidator accepts the origins ALLOWED_HOSTS names."""
    if "*" not in (getattr(settings, "ALLOWED_HOSTS", None) or ()):
        return []
    return [
        Warning(
            "ALLOWED_HOSTS contains '*': the websocket Origin check "
            "(AllowedHostsOriginValidator) then accepts every origin, so any web site can "
            "open a session's websocket with a visitor's cookies.",
            hint="List the site's host names in ALLOWED_HOSTS.",
            id="durable_sessions.W023",
        )
    ]


@register(deploy=True)
def check_metrics_processes(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Several processes that each count for themselves need multiprocess mode, or a
    scrape sees one process's share of the connections and runs."""
    from durable_sessions.observability import exposition, metrics

    try:
        processes, enabled = ds_settings.PROCESSES, ds_settings.METRICS_ENABLED
    except ImproperlyConfigured:
        return []  # reported by check_settings
    if processes < 2 or not enabled or not metrics.AVAILABLE or exposition.multiprocess_dir():
        return []
    return [
        Warning(
            f"{SETTING_NAME}['PROCESSES'] is {processes} but PROMETHEUS_MULTIPROC_DIR is not "
            "set: each process reports only its own metrics.",
            hint="Set PROMETHEUS_MULTIPROC_DIR to a directory shared by the processes of a "
            "machine before they start, or scrape every process (see docs/operations.md).",
            id="durable_sessions.W030",
        )
    ]
