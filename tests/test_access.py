"""Who may open a session's websocket: owners and operators, nobody else."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from durable_sessions import service
from tests.factories import anonymous_session, communicator, make_user, visitor_session

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async


async def refused_with(comm) -> int:
    connected, _ = await comm.connect()
    assert connected  # accepted only to deliver the close code
    output = await comm.receive_output(timeout=5)
    assert output["type"] == "websocket.close", output
    await comm.wait()
    return output["code"]


async def first_frame(comm) -> dict:
    connected, _ = await comm.connect()
    assert connected
    frame = await comm.receive_json_from(timeout=5)
    await comm.disconnect()
    return frame


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("owner_visitor", "owner"),
        ("other_visitor", 4403),
        ("no_session", 4403),
        ("other_user", 4403),
        ("operator", "operator"),
        # Staff status alone is not access (STAFF_ARE_OPERATORS is False by default).
        ("staff", 4403),
        ("inactive_operator", 4403),
    ],
)
async def test_access_matrix_for_an_anonymous_session(who, expected):
    session, store = await db(anonymous_session)("v-owner")

    def build():
        if who == "owner_visitor":
            return {"store": store}
        if who == "other_visitor":
            return {"store": visitor_session("v-other")}
        if who == "no_session":
            return {}
        if who == "other_user":
            return {"user": make_user("mallory")}
        if who == "operator":
            return {"user": make_user("op", operator=True)}
        if who == "staff":
            return {"user": make_user("st", staff=True)}
        user = make_user("gone", operator=True)
        user.is_active = False
        user.save()
        return {"user": user}

    comm = communicator(session.id, **await db(build)())
    if isinstance(expected, int):
        assert await refused_with(comm) == expected
    else:
        frame = await first_frame(comm)
        assert frame["type"] == "snapshot" and frame["you"]["access"] == expected


async def test_a_users_session_is_not_open_to_an_anonymous_visitor_with_a_matching_id():
    owner = await db(make_user)("uma")
    session = await service.acreate_session(owner=owner)
    comm = communicator(session.id, store=await db(visitor_session)(""))
    assert await refused_with(comm) == 4403


async def test_unknown_session_and_bad_after_seq():
    comm = communicator("3f1c2b7e-0000-4000-8000-000000000000", store=None)
    assert await refused_with(comm) == 4403
    session, store = await db(anonymous_session)()
    for bad in ("-1", "abc", "1e3", "%C2%B2", "1" * 19):
        comm = communicator(session.id, store=store)
        comm.scope["query_string"] = f"after_seq={bad}".encode()
        assert await refused_with(comm) == 4400


async def test_a_malformed_session_id_is_a_bad_request():
    comm = communicator("not-a-uuid", store=None)
    assert await refused_with(comm) == 4400
