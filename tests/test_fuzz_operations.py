"""Property-based fuzzing of the operations endpoints: the scrape endpoint's credentials
and the workers' health port, which parses raw HTTP itself.

For any input: no 5xx and no crash; the metrics are shown only to an allowed address or
the right token; the health port answers every request with a status line and closes.
"""

from __future__ import annotations

import asyncio

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from durable_sessions.runtime.health_server import HealthServer
from tests.fuzzing import FUZZ, nasty_text

pytestmark = [pytest.mark.django_db(transaction=True)]

TOKEN = "the-right-token"
addresses = st.one_of(
    nasty_text,
    st.ip_addresses().map(str),
    st.sampled_from(["127.0.0.1", "::1", "10.0.0.1", "", "127.0.0.1, 10.0.0.1", "::ffff:7f00:1"]),
)
authorizations = st.one_of(
    nasty_text,
    nasty_text.map(lambda t: "Bearer " + t),
    st.sampled_from(
        [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer {TOKEN} ", "Bearer ", "Basic x"]
    ),
)


@FUZZ
@given(address=addresses, authorization=authorizations)
def test_the_scrape_endpoint_shows_metrics_only_to_those_allowed(ds_config, address, authorization):
    ds_config(METRICS_TOKEN=TOKEN)
    response = Client().get("/ds/metrics/", REMOTE_ADDR=address, HTTP_AUTHORIZATION=authorization)
    allowed = authorization.startswith("Bearer ") and authorization[7:].strip() == TOKEN
    if not authorization.startswith("Bearer "):
        allowed = address in ("127.0.0.1", "::1")
    assert response.status_code == (200 if allowed else 403)
    if not allowed:
        assert b"ds_connections" not in response.content


requests = st.one_of(
    st.binary(max_size=300).map(lambda b: b + b"\r\n\r\n"),
    st.binary(max_size=300),
    st.builds(
        lambda method, path, header: f"{method} {path} HTTP/1.1\r\n{header}\r\n\r\n".encode(
            "utf-8", "surrogatepass"
        ),
        st.sampled_from(["GET", "POST", "get", "", "GET GET"]),
        st.one_of(
            nasty_text,
            st.sampled_from(
                ["/health/live/", "/health/ready", "/metrics/", "/metrics/?x=1", "*", "//"]
            ),
        ),
        st.one_of(nasty_text, st.just("Authorization: Bearer x"), st.just(":::")),
    ),
    st.just(b"GET /health/live/ HTTP/1.1\r\n" + b"X: " + b"a" * 10_000 + b"\r\n\r\n"),
)


@FUZZ
@given(raw=requests)
def test_the_health_port_answers_any_request_with_a_status_and_closes(raw):
    async def exchange() -> bytes:
        server = HealthServer("127.0.0.1", 0, lambda: True)
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(raw)
            await writer.drain()
            writer.write_eof()
            async with asyncio.timeout(10):
                answer = await reader.read()
            writer.close()
            return answer
        finally:
            await server.stop()

    answer = asyncio.run(exchange())
    status = int(answer.split(b" ", 2)[1])
    assert status in (200, 400, 403, 404, 405, 503)
    assert status != 503 or b"/health/ready" in raw
