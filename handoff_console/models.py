"""The console's permission lives on an unmanaged model with no table."""

from django.db import models


class ConsoleAccess(models.Model):
    """Carries the ``handoff_console.use_console`` permission; has no rows."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("use_console", "Can use the handoff console")]

    def __str__(self) -> str:
        return "console access"
