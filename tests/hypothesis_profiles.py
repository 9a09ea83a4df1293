"""Hypothesis profiles, chosen with ``HYPOTHESIS_PROFILE`` (loaded by tests/conftest.py).

- ``default``: a developer's run; each fuzz test's own number of examples.
- ``ci``: the same numbers, derandomized: a CI run tries the same examples every time, so a
  failure reproduces with the same command (``.ci/run`` sets it).
- ``hunt``: new random examples each run, ``DS_FUZZ_EXAMPLES`` (default 1000) per test
  whatever the test asks for, to find failures before CI does. Pin what it finds with
  ``@example(...)`` in the test.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
HUNT_EXAMPLES = int(os.environ.get("DS_FUZZ_EXAMPLES", "1000"))
HUNTING = PROFILE == "hunt"

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile(
    "hunt",
    max_examples=HUNT_EXAMPLES,
    derandomize=False,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(PROFILE)


def examples(count: int) -> int:
    """A fuzz test's number of examples: its own, or the hunt's while hunting."""
    return HUNT_EXAMPLES if HUNTING else count
