from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class HandoffConsoleConfig(AppConfig):
    """The operator console where support staff take over from the AI."""

    name = "handoff_console"
    verbose_name = _("Handoff console")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from handoff_console import checks  # noqa: F401 (registers the checks)
