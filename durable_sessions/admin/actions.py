"""Admin actions on sessions. Every change is a call to the session service.

Each session is changed in its own service transaction, so a batch never leaves a
session half-changed: a session the service refuses (already closed, already with
the AI, ...) is reported by name and left as it was, and the others are applied.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from django.contrib import admin, messages
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop, ngettext
from django.utils.translation import gettext_lazy as _

from durable_sessions import service
from durable_sessions.errors import Conflict, ServiceError
from durable_sessions.exports import export_document
from durable_sessions.models import Control, DurableSession
from durable_sessions.service.text import with_streaming_text

# Set by the buttons of a session's own page, so the action returns to that page.
FROM_DETAIL_PARAM = "_ds_from_detail"

# Applies the action to one session; returns why it was skipped, or None when applied.
Apply = Callable[[DurableSession], str | None]

_ERROR_TEXT = {
    "session_closed": _("the session is closed"),
    "not_found": _("the session no longer exists"),
}


def session_label(session: DurableSession) -> str:
    short = str(session.pk)[:8]
    if session.title:
        return gettext("“%(title)s” (%(id)s)") % {"title": session.title, "id": short}
    return gettext("Session %(id)s") % {"id": short}


# How the customer's page names an admin who acted: the admin's username is for staff only
# (the audit row's ``actor`` and the admin log record who it was).
SUPPORT_NAME = "Support"


def _run(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[DurableSession],
    *,
    done_text: str,
    apply: Apply,
) -> HttpResponseRedirect | None:
    """Apply to each session, report each refusal, and log each change in the admin log."""
    applied = 0
    for session in queryset:
        label = session_label(session)
        try:
            skipped = apply(session)
        except ServiceError as exc:
            text = _ERROR_TEXT.get(exc.code, exc.message)
            refused = gettext("%(session)s: not changed, %(reason)s.")
            modeladmin.message_user(
                request, refused % {"session": label, "reason": text}, messages.ERROR
            )
            continue
        if skipped:
            skipped_text = gettext("%(session)s: not changed, %(reason)s.")
            modeladmin.message_user(
                request, skipped_text % {"session": label, "reason": skipped}, messages.WARNING
            )
            continue
        applied += 1
        # The admin log says which admin did it; the session's own log may not. Its text
        # stays in English: the log is read by staff of any language.
        modeladmin.log_change(request, session, f"{done_text} (admin action)")
    if applied:
        done = ngettext("%(done)s: %(count)d session.", "%(done)s: %(count)d sessions.", applied)
        modeladmin.message_user(
            request, done % {"done": gettext(done_text), "count": applied}, messages.SUCCESS
        )
    return _back_to_detail(modeladmin, request, queryset)


def _back_to_detail(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[DurableSession]
) -> HttpResponseRedirect | None:
    """From a session's page, return there; otherwise the admin returns to the list."""
    if not request.POST.get(FROM_DETAIL_PARAM):
        return None
    pks = list(queryset.values_list("pk", flat=True)[:2])
    if len(pks) != 1:
        return None
    opts = modeladmin.model._meta
    url = reverse(
        f"admin:{opts.app_label}_{opts.model_name}_change",
        args=[pks[0]],
        current_app=modeladmin.admin_site.name,
    )
    return HttpResponseRedirect(url)


@admin.action(description=_("Close selected sessions"), permissions=["operate"])
def close_sessions(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[DurableSession]
) -> HttpResponseRedirect | None:
    def apply(session: DurableSession) -> str | None:
        closed = service.close_session(session.pk, actor=request.user)
        return None if closed else gettext("it was already closed")

    return _run(modeladmin, request, queryset, done_text=gettext_noop("Closed"), apply=apply)


@admin.action(description=_("Return selected sessions to the AI"), permissions=["operate"])
def return_to_ai(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[DurableSession]
) -> HttpResponseRedirect | None:
    reason = f"returned to the AI by {SUPPORT_NAME}"

    def apply(session: DurableSession) -> str | None:
        try:
            # ``expect`` is checked under the row lock: a session the AI already has is
            # reported rather than silently left alone.
            service.change_control(
                session.pk,
                Control.AI,
                reason=reason,
                expect=(Control.QUEUED, Control.HUMAN),
                actor=request.user,
            )
        except Conflict:
            return gettext("the AI agent already has it")
        return None

    return _run(
        modeladmin, request, queryset, done_text=gettext_noop("Returned to the AI"), apply=apply
    )


@admin.action(description=_("Escalate selected sessions to a human"), permissions=["operate"])
def escalate_to_human(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[DurableSession]
) -> HttpResponseRedirect | None:
    reason = f"escalated by {SUPPORT_NAME}"

    def apply(session: DurableSession) -> str | None:
        queued = service.request_handoff(session.pk, by=None, reason=reason, actor=request.user)
        return None if queued else gettext("it is already waiting for or with a human")

    return _run(
        modeladmin, request, queryset, done_text=gettext_noop("Escalated to a human"), apply=apply
    )


@admin.action(description=_("Export selected transcripts as JSON"), permissions=["view"])
def export_json(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[DurableSession]
) -> HttpResponse:
    document = export_document(queryset, prepare=with_streaming_text)
    found = document["sessions"]
    if len(found) == 1:
        filename = f"session-{found[0]['session']['id']}.json"
    else:
        filename = f"sessions-{timezone.now():%Y%m%d-%H%M%S}.json"
    body = json.dumps(document, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    # An attachment, never rendered by the browser: the transcript is untrusted text.
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


SESSION_ACTIONS = [close_sessions, return_to_ai, escalate_to_human, export_json]
