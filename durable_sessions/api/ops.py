"""Endpoints for the platform: liveness, readiness and the Prometheus scrape.

``health/live/`` answers as long as the process serves requests; ``health/ready/`` runs
the readiness checks (:mod:`durable_sessions.delivery.health`) and answers 503 while one
fails, so that a load balancer or Kubernetes stops sending traffic to a process that
cannot reach its database or Redis. ``metrics/`` is readable with
``Authorization: Bearer <METRICS_TOKEN>`` or from ``METRICS_ALLOWED_IPS``.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from durable_sessions.app_settings import ds_settings
from durable_sessions.delivery.health import readiness
from durable_sessions.observability import exposition, metrics

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
async def ready(request: HttpRequest) -> JsonResponse:
    checks = await readiness()
    ok = all(check.ok for check in checks)
    return JsonResponse(
        {
            "status": "ready" if ok else "unavailable",
            "checks": {check.name: "ok" if check.ok else "failed" for check in checks},
        },
        status=200 if ok else 503,
    )


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    allowed = exposition.scraper_allowed(
        request.headers.get("Authorization", ""), request.META.get("REMOTE_ADDR", "")
    )
    if not allowed:
        return HttpResponse(
            "metrics: not allowed from here (METRICS_TOKEN, METRICS_ALLOWED_IPS)\n",
            status=403,
            content_type="text/plain",
        )
    if not metrics.AVAILABLE or not ds_settings.METRICS_ENABLED:
        return HttpResponse(
            "metrics: off (install the [metrics] extra; METRICS_ENABLED)\n",
            status=404,
            content_type="text/plain",
        )
    return HttpResponse(exposition.render(), content_type=exposition.CONTENT_TYPE)
