"""Seeing the app work in production: Prometheus metrics, the scrape endpoint's output,
structured logs and OpenTelemetry spans (see docs/operations.md).

Everything here sits at the base layer, so that every layer may record what it does.
Recording is a cheap no-op when ``prometheus_client`` (or ``opentelemetry``) is not
installed or when ``METRICS_ENABLED`` (``TRACING``) is off.
"""
