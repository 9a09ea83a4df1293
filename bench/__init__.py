"""Benchmarks of django-durable-sessions against a bare Channels relay and django-eventstream.

``make bench`` (``python -m bench.run``) starts real Daphne processes on PostgreSQL and
Redis, drives them with websocket clients running in separate processes, and writes the
figures to ``docs/benchmarks.md``. Nothing here is collected by pytest.
"""
