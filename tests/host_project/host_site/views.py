"""The product's own view: hands a single-page front end its CSRF token."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.middleware.csrf import get_token
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET


@require_GET
@ensure_csrf_cookie
def csrf(request: HttpRequest) -> JsonResponse:
    """Set the CSRF cookie and return the token to send as ``X-CSRFToken``."""
    return JsonResponse({"csrf_token": get_token(request)})
