"""Device grants: a "continue on another device" link that opens one session, once.

A grant is made by the session's customer, opened by one more browser within
``DEVICE_LINK_TTL`` seconds, and then lets that browser (by its own visitor id) use that
one session until the customer revokes it or the session closes. Each operation holds the
session's lock (:func:`session_write`), so the per-session limit and single use hold
under concurrent requests.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from durable_sessions.app_settings import ds_settings
from durable_sessions.errors import Conflict, ServiceError, SessionNotFound
from durable_sessions.models import DeviceGrant, DurableSession, Status
from durable_sessions.service.unit import as_uuid, session_write

# 32 random bytes: a token nobody guesses within a link's few minutes.
TOKEN_BYTES = 32
MAX_TOKEN_CHARS = 100


class LinkUnavailable(ServiceError):
    """The link cannot be opened (any more); ``reason`` says why, for the page to explain.

    ``reason`` is one of ``invalid`` (unknown token), ``used`` (another browser opened it),
    ``expired``, ``revoked`` or ``closed`` (the conversation is closed).
    """

    code = "link_unavailable"
    status_code = 410

    def __init__(self, reason: str) -> None:
        super().__init__(f"this link cannot be opened: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class NewGrant:
    """A grant just made, with the token of its link (stored nowhere but in the link)."""

    grant: DeviceGrant
    token: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_device_grant(session_id: uuid.UUID | str) -> NewGrant:
    """Make a link for one more device of the session's customer.

    Raises :class:`SessionClosed` for a closed session, :class:`Conflict` when the session
    already has ``DEVICE_GRANTS_PER_SESSION`` grants in use or waiting to be opened, or
    when it belongs to an account (the other device logs in to that account instead).
    """
    with session_write(session_id) as w:
        w.require_open()
        session = DurableSession.objects.only("owner_id").get(pk=w.session_id)
        if session.owner_id is not None:
            raise Conflict(
                "this conversation belongs to an account: log in to it on the other device"
            )
        limit = ds_settings.DEVICE_GRANTS_PER_SESSION
        if DeviceGrant.objects.filter(session_id=w.session_id).counting().count() >= limit:
            raise Conflict(f"this conversation already has {limit} device links: revoke one first")
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = timezone.now()
        grant = DeviceGrant.objects.create(
            session_id=w.session_id,
            token_hash=token_hash(token),
            created_at=now,
            expires_at=now + timedelta(seconds=ds_settings.DEVICE_LINK_TTL),
        )
    return NewGrant(grant, token)


def find_device_grant(token: object) -> DeviceGrant:
    """The grant of a link's token (not yet checked for use); :class:`LinkUnavailable`."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise LinkUnavailable("invalid")
    grant = DeviceGrant.objects.select_related("session").filter(token_hash=token_hash(token))
    found = grant.first()
    if found is None:
        raise LinkUnavailable("invalid")
    return found


def redeem_device_grant(token: object, visitor: str) -> DeviceGrant:
    """Bind the link's grant to the browser ``visitor`` (its own id), once.

    Opening the same link again from the browser that opened it is harmless (the same
    grant comes back); any other browser gets :class:`LinkUnavailable`.
    """
    if not visitor:
        raise LinkUnavailable("invalid")
    found = find_device_grant(token)
    with session_write(found.session_id) as w:
        # Read again under the session's lock: of two browsers at once, one wins.
        grant = DeviceGrant.objects.get(pk=found.pk)
        if grant.revoked_at is not None:
            raise LinkUnavailable("revoked")
        if grant.redeemed_at is not None:
            if secrets.compare_digest(grant.redeemed_by_visitor, visitor):
                return grant
            raise LinkUnavailable("used")
        if w.status != Status.OPEN:
            raise LinkUnavailable("closed")
        if grant.expires_at <= timezone.now():
            raise LinkUnavailable("expired")
        grant.redeemed_at = timezone.now()
        grant.redeemed_by_visitor = visitor
        grant.save(update_fields=["redeemed_at", "redeemed_by_visitor"])
    return grant


def revoke_device_grant(session_id: uuid.UUID | str, grant_id: int) -> DeviceGrant:
    """Revoke one grant of the session (idempotent); the device loses access at once.

    Raises :class:`SessionNotFound` when the grant is not one of the session's.
    """
    with session_write(session_id) as w:
        grant = DeviceGrant.objects.filter(session_id=w.session_id, pk=grant_id).first()
        if grant is None:
            raise SessionNotFound(f"no device link {grant_id} in this session")
        if grant.revoked_at is None:
            grant.revoked_at = timezone.now()
            grant.save(update_fields=["revoked_at"])
    return grant


def device_grants(session_id: uuid.UUID | str) -> list[DeviceGrant]:
    """The session's grants, newest first (a read: for listing them to the customer)."""
    return list(DeviceGrant.objects.filter(session_id=as_uuid(session_id)).order_by("-id"))
