"""Hypothesis strategies and settings shared by the fuzz tests of the API and the frames.

The inputs are what a fuzzer tries: any JSON, text with lone surrogates and bidi controls,
integers past 64 bits, non-finite numbers, deep nesting, raw bytes. Examples are
derandomized (the same ones in every run, so CI is stable) and bounded: set
``DS_FUZZ_EXAMPLES`` for a longer run, ``DS_FUZZ_RANDOM=1`` for new examples each run, or
``HYPOTHESIS_PROFILE=hunt`` for both (tests/hypothesis_profiles.py).
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.hypothesis_profiles import HUNTING, examples

FUZZ = settings(
    max_examples=examples(int(os.environ.get("DS_FUZZ_EXAMPLES", "100"))),
    deadline=None,
    derandomize=not HUNTING and os.environ.get("DS_FUZZ_RANDOM") != "1",
    database=None,
    # The database and clients live for the whole test, across examples, on purpose.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# Every character, lone surrogates (category Cs) included.
any_char = st.characters(exclude_categories=())
nasty_text = st.one_of(
    st.text(any_char, max_size=20),
    st.sampled_from(["", " ", "\x00", "\ud800", "a\udfffb", "\u202eevil", "<b>x</b>", "x" * 600]),
)
big_int = st.one_of(
    st.integers(),
    st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1, 10**40, -1, 0]),
)
scalar = st.one_of(
    st.none(),
    st.booleans(),
    big_int,
    st.floats(allow_nan=True, allow_infinity=True),
    nasty_text,
)
json_value = st.recursive(
    scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(nasty_text, inner, max_size=3),
    max_leaves=6,
)


def dumps(value: Any) -> str:
    # ASCII: a lone surrogate becomes the "\ud800" escape a client would send; NaN and
    # infinities become Python's NaN/Infinity, which are not JSON.
    return json.dumps(value, ensure_ascii=True)


def objects(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects of the given fields (any values) and, now and then, other keys."""
    keys = st.one_of(st.sampled_from(fields), nasty_text) if fields else nasty_text
    return st.dictionaries(keys, json_value, max_size=4)


# Nesting depths around the app's bound (32) and Python's recursion limit (about 1000).
depths = st.one_of(st.sampled_from([31, 32, 33, 972, 1000, 5000]), st.integers(1, 3000))
raw_json_text = st.one_of(
    depths.map(lambda n: "[" * n + "]" * n),
    depths.map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.sampled_from(
        [
            "",
            "{",
            "[1, 2",
            "null",
            "NaN",
            '{"to": 1e400}',
            '{"to": -Infinity}',
            '{"content": "\\ud800"}',
            '{"\\ud800": 1}',
            "\ufeff{}",
        ]
    ),
    st.text(any_char, max_size=40),
)


def bodies(fields: list[str]) -> st.SearchStrategy[bytes]:
    """Request bodies: JSON objects of these fields, malformed JSON, or raw bytes."""
    return st.one_of(
        objects(fields).map(lambda value: dumps(value).encode()),
        json_value.map(lambda value: dumps(value).encode()),
        raw_json_text.map(lambda text: text.encode("utf-8", "surrogatepass")),
        st.binary(max_size=64),
    )


def queries(names: list[str]) -> st.SearchStrategy[dict[str, str]]:
    """Query strings: these parameters (and others) with any text or number."""
    value = st.one_of(
        nasty_text,
        big_int.map(str),
        st.floats().map(str),
        st.sampled_from(["nan", "inf", "-inf", "1e400", "0x10", "1_000", "٣", "²"]),
    )
    keys = st.one_of(st.sampled_from(names), st.text(max_size=5)) if names else st.text(max_size=5)
    return st.dictionaries(keys, value, max_size=4)
