"""A host's own DRF throttle, as a project would set in REST_FRAMEWORK."""

from rest_framework.throttling import AnonRateThrottle


class OnePerMinute(AnonRateThrottle):
    """One anonymous request a minute (the rate is fixed here, not read from settings)."""

    rate = "1/min"
