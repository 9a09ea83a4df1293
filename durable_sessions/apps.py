from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DurableSessionsConfig(AppConfig):
    """Registers the system checks, the settings reload hook and the access receivers."""

    name = "durable_sessions"
    verbose_name = _("Durable sessions")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from durable_sessions import app_settings, checks, host_checks  # noqa: F401
        from durable_sessions.delivery.revocation import connect_receivers
        from durable_sessions.observability import receivers

        connect_receivers()
        receivers.connect()
