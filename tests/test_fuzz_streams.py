"""Property-based fuzzing of the Durable Streams transport (docs/durable-streams.md).

For any method, stream path, protocol header, query string and body: no 5xx, and a
refused write changes nothing (no stream, entry or producer state appears or changes).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from durable_sessions.stream_models import Stream, StreamEntry, StreamProducer
from tests.fuzzing import FUZZ, big_int, bodies

pytestmark = [pytest.mark.django_db(transaction=True)]

# What a header can carry over HTTP: Latin-1 text.
header_text = st.one_of(
    st.text(st.characters(max_codepoint=255), max_size=30),
    big_int.map(str),
    st.sampled_from(["", "true", "TRUE", "-1", "01", "2**53", "9007199254740993", "x" * 300]),
)
HEADERS = [
    "Content-Type",
    "Stream-TTL",
    "Stream-Expires-At",
    "Stream-Closed",
    "Stream-Seq",
    "Stream-Forked-From",
    "Stream-Fork-Offset",
    "Stream-Fork-Sub-Offset",
    "Producer-Id",
    "Producer-Epoch",
    "Producer-Seq",
    "If-None-Match",
]
headers = st.dictionaries(st.sampled_from(HEADERS), header_text, max_size=5)
paths = st.one_of(
    st.sampled_from(["a", "json", "a/b", "%00", "..%2F..", "x" * 1100, "😀" * 300, "__ds/x"]),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12),
)
offsets = st.one_of(
    st.sampled_from(["-1", "now", "", "0000000000000001_0000000000000003", "9" * 19 + "_0"]),
    header_text,
)
queries = st.fixed_dictionaries(
    {},
    optional={
        "offset": offsets,
        "live": st.sampled_from(["long-poll", "", "sse2", "LONG-POLL"]),
        "cursor": header_text,
    },
)


def snapshot() -> list[Any]:
    return [
        list(Stream.objects.order_by("pk").values_list("path", "tail_seq", "closed")),
        list(StreamEntry.objects.order_by("pk").values_list("stream_id", "seq", "data")),
        list(StreamProducer.objects.order_by("pk").values_list("producer_id", "epoch", "last_seq")),
    ]


def test_any_request_gets_an_answer_and_a_refused_write_changes_nothing(ds_config):
    ds_config(STREAMS_ACCESS="anyone", STREAMS_LONG_POLL_TIMEOUT=0.05)
    client = Client()
    client.put("/v1/stream/a", b"seed", content_type="text/plain")
    client.put("/v1/stream/json", b'[{"k": 1}]', content_type="application/json")

    @given(
        method=st.sampled_from(["put", "post", "get", "head", "delete", "options", "patch"]),
        path=paths,
        extra=headers,
        query=queries,
        body=bodies(["k"]),
    )
    @FUZZ
    def run(method: str, path: str, extra: dict[str, str], query: dict[str, str], body: bytes):
        before = snapshot()
        kind = extra.pop("Content-Type", "application/json")
        url = "/v1/stream/" + quote(path, safe="/%")
        call = getattr(client, method)
        if method in ("get", "head"):
            response = call(url, query, headers=extra)
        else:
            response = call(url, body, content_type=kind, headers=extra)
        assert response.status_code < 500, (method, path, extra, query, response.content[:200])
        if response.status_code >= 400 or method in ("get", "head", "options"):
            assert snapshot() == before

    run()
