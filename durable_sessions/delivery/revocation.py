"""Telling open connections that a user's access may have changed.

A websocket decides access at connect and re-reads it before state-changing frames at
most every ``RECHECK_ACCESS_SECONDS``. These receivers make the common revocations
immediate: every connection of an authenticated user joins the group
:func:`user_group`, and

- logging out sends ``session.logout`` with a digest of the Django session key: the
  connections opened with that Django session close with 4403;
- a change to the user row (``is_active``, password, staff flag; not the ``last_login``
  a login writes) or to the user's permissions or groups sends ``session.access``: each
  connection re-reads its access at once.

A lost message only delays this to the next periodic re-check; a group's permissions
changing is left to it. Messages are sent after the transaction commits.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import m2m_changed, post_save

from durable_sessions.app_settings import ds_settings

logger = logging.getLogger(__name__)

LOGOUT_MESSAGE_TYPE = "session.logout"
ACCESS_MESSAGE_TYPE = "session.access"
_PLAIN = re.compile(r"[A-Za-z0-9_.-]{1,40}")


def user_group(user_id: Any) -> str:
    """The channel-layer group of one user's connections."""
    key = str(user_id)
    if not _PLAIN.fullmatch(key):
        key = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{ds_settings.GROUP_PREFIX}.u.{key}"


def session_key_digest(session_key: str | None) -> str:
    """What a logout message carries instead of the Django session key itself."""
    return hashlib.sha256((session_key or "").encode()).hexdigest()


def _send(user_id: Any, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None or user_id is None:
        return

    def send() -> None:
        try:
            async_to_sync(layer.group_send)(user_group(user_id), message)
        except Exception as error:  # the periodic re-check still applies
            logger.warning("could not tell connections of user %s: %r", user_id, error)

    transaction.on_commit(send, robust=True)


def on_logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    if user is None or not getattr(user, "is_authenticated", False):
        return
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    _send(user.pk, {"type": LOGOUT_MESSAGE_TYPE, "session": session_key_digest(key)})


def on_user_saved(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if kwargs.get("created") or (update_fields and set(update_fields) <= {"last_login"}):
        return
    _send(instance.pk, {"type": ACCESS_MESSAGE_TYPE})


def on_memberships_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any = None, **kwargs: Any
) -> None:
    if not action.startswith("post_"):
        return
    user_model = get_user_model()
    if not reverse and isinstance(instance, user_model):
        users = [instance.pk]
    elif reverse and kwargs.get("model") is user_model:
        users = list(pk_set or ())  # e.g. permission.user_set.remove(user)
    else:
        return
    for user_id in users:
        _send(user_id, {"type": ACCESS_MESSAGE_TYPE})


def connect_receivers() -> None:
    """Connect the receivers (from the app's ``ready``)."""
    user_model = get_user_model()
    user_logged_out.connect(on_logged_out, dispatch_uid="durable_sessions.logout")
    post_save.connect(on_user_saved, sender=user_model, dispatch_uid="durable_sessions.user")
    for field in ("user_permissions", "groups"):
        through = getattr(getattr(user_model, field, None), "through", None)
        if through is not None:
            m2m_changed.connect(
                on_memberships_changed, sender=through, dispatch_uid=f"durable_sessions.{field}"
            )
