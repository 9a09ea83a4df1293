"""Who may use the console: the operator rule of durable_sessions' adapter."""

from __future__ import annotations

from django.contrib.auth.mixins import AccessMixin
from django.http import HttpRequest, HttpResponse

from durable_sessions.adapter import get_adapter


def is_operator(user) -> bool:
    return get_adapter().is_operator(user)


class OperatorRequiredMixin(AccessMixin):
    """Anonymous users go to the login page; logged-in non-operators get 403."""

    raise_exception = False

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        if not is_operator(request.user):
            self.raise_exception = True
            return self.handle_no_permission()
        return super().dispatch(request, *args, **kwargs)
