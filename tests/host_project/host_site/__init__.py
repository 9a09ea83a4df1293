"""A small product that installs django-durable-sessions from its wheel."""
