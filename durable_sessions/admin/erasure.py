"""Erasing customers from the admin, and the read-only audit trail of deletions.

The action asks for a confirmation page first (an erasure cannot be undone), then erases
the customer of each selected session through the session service. Only users with the
sessions' delete permission (``durable_sessions.delete_durablesession``) see it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_permission_codename, get_user_model
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from durable_sessions import service
from durable_sessions.admin.inputs import CheckedInputAdmin
from durable_sessions.errors import ServiceError
from durable_sessions.models import DeletionRecord, DurableSession

CONFIRM_PARAM = "_ds_confirm_erase"


def has_erase_permission(modeladmin: admin.ModelAdmin, request: HttpRequest) -> bool:
    opts = modeladmin.opts
    return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('delete', opts)}")


def _customers(queryset: QuerySet[DurableSession]) -> list[tuple[Any, str]]:
    """The distinct customers (user id, visitor id) of the selected sessions."""
    pairs = queryset.values_list("owner_id", "owner_visitor").distinct()
    return sorted({(owner, "" if owner else visitor) for owner, visitor in pairs}, key=str)


def _customer_sessions(customers: list[tuple[Any, str]]) -> int:
    mine = Q()
    for owner, visitor in customers:
        mine |= Q(owner_id=owner) if owner else Q(owner__isnull=True, owner_visitor=visitor)
    return DurableSession.objects.filter(mine).count() if mine else 0


@admin.action(
    description=_("Erase all data of the selected sessions' customers"), permissions=["erase"]
)
def erase_customers(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[DurableSession]
) -> HttpResponse | None:
    customers = _customers(queryset)
    if not request.POST.get(CONFIRM_PARAM):
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": gettext("Erase customers' data?"),
            "opts": modeladmin.opts,
            "queryset": queryset,
            "customers": len(customers),
            "sessions": _customer_sessions(customers),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "confirm_param": CONFIRM_PARAM,
        }
        return TemplateResponse(
            request, "admin/durable_sessions/durablesession/erase_confirmation.html", context
        )
    users = {u.pk: u for u in _users(c[0] for c in customers if c[0])}
    erased = sessions = 0
    for owner, visitor in customers:
        try:
            record = service.erase_customer(
                user=users.get(owner), visitor=visitor, actor=request.user, via="admin"
            )
        except ServiceError as error:
            not_erased = gettext("Not erased: %(reason)s.") % {"reason": error.message}
            modeladmin.message_user(request, not_erased, messages.ERROR)
            continue
        erased += 1
        sessions += record.sessions
    if erased:
        modeladmin.message_user(
            request,
            ngettext(
                "Erased %(count)d customer: %(sessions)d sessions and everything linked to them.",
                "Erased %(count)d customers: %(sessions)d sessions and everything linked to them.",
                erased,
            )
            % {"count": erased, "sessions": sessions},
            messages.SUCCESS,
        )
    return None


def _users(ids: Any) -> list[Any]:
    return list(get_user_model()._default_manager.filter(pk__in=list(ids)))


@admin.register(DeletionRecord)
class DeletionRecordAdmin(CheckedInputAdmin):
    """The audit trail of retention runs and erasures: read only, no personal data."""

    list_display = ["created_at", "kind", "via", "actor", "subject", "sessions", "archive"]
    list_filter = ["kind", "via"]
    fields = [
        "created_at",
        "kind",
        "via",
        "actor",
        "subject",
        "sessions",
        "counts",
        "closed_before",
        "archive",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
