"""Durable sessions for AI-agent conversations."""

__version__ = "0.1.0"
