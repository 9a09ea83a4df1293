"""Who may use the console and what they may see: the operator rule of the adapter.

The console asks ``durable_sessions``' adapter (``DURABLE_SESSIONS["ADAPTER"]``) both
questions, so a host project that narrows ``is_operator`` or ``access`` (e.g. per team)
narrows the console too.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.mixins import AccessMixin
from django.contrib.auth.models import Permission
from django.db.models import Q
from django.http import HttpRequest, HttpResponse

from durable_sessions.adapter import AnyUser, SessionAdapter, get_adapter
from durable_sessions.app_settings import ds_settings
from durable_sessions.models import DurableSession

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
# Operators offered as transfer targets, at most.
MAX_OPERATOR_CHOICES = 200


def is_operator(user: AnyUser | None) -> bool:
    """True when ``user`` may use the console."""
    return get_adapter().is_operator(user)


def can_view(session: DurableSession, user: AnyUser) -> bool:
    """True when the operator ``user`` may see ``session`` in the console."""
    return get_adapter().access(session, user, None) is not None


def operator_permission() -> Permission | None:
    """The permission object named by ``DURABLE_SESSIONS["OPERATOR_PERMISSION"]``."""
    app_label, _, codename = ds_settings.OPERATOR_PERMISSION.partition(".")
    return Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()


def operator_choices(*, exclude: AnyUser | None = None) -> list[Any]:
    """Active users who are operators (transfer targets), by username.

    Candidates come from one query (staff, superusers, holders of the permission
    directly or through a group); the adapter then has the last word on each.
    """
    users = get_user_model().objects.filter(is_active=True)
    who = Q(is_superuser=True)
    if ds_settings.STAFF_ARE_OPERATORS:
        who |= Q(is_staff=True)
    permission = operator_permission()
    if permission is not None:
        who |= Q(user_permissions=permission) | Q(groups__permissions=permission)
    if exclude is not None and exclude.is_authenticated:
        users = users.exclude(pk=exclude.pk)
    field = get_user_model().USERNAME_FIELD
    candidates = list(users.filter(who).distinct().order_by(field)[:MAX_OPERATOR_CHOICES])
    default_rule = type(get_adapter()).is_operator is SessionAdapter.is_operator
    if default_rule and settings.AUTHENTICATION_BACKENDS == [MODEL_BACKEND]:
        # The query above is exactly the default rule with Django's own backend: no
        # need to ask user by user (each has_perm would cost queries).
        return candidates
    return [user for user in candidates if is_operator(user)]


class OperatorRequiredMixin(AccessMixin):
    """Anonymous users go to the login page; logged-in non-operators get 403."""

    raise_exception = False

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        if not is_operator(request.user):
            self.raise_exception = True
            return self.handle_no_permission()
        return super().dispatch(request, *args, **kwargs)
