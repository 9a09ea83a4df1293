from django.apps import AppConfig


class ProjectConfig(AppConfig):
    """The demo project: its pages and the ``seed_demo`` command."""

    name = "project"
    verbose_name = "Demo project"
