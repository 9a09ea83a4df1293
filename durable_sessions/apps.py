from django.apps import AppConfig


class DurableSessionsConfig(AppConfig):
    """Registers the system checks and the settings reload hook."""

    name = "durable_sessions"
    verbose_name = "Durable sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from durable_sessions import app_settings, checks  # noqa: F401
