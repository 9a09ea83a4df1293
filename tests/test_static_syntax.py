"""Every script the app and the demo serve parses as an ES module.

A page whose module fails to parse shows nothing and reports nothing to the server; this
catches it before a browser test times out on an empty page.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.services import missing

# Neither the database nor a channel layer backend: the PostgreSQL + Redis pass skips it.
pytestmark = pytest.mark.neutral

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(
    path
    for folder in ("durable_sessions/static", "handoff_console/static", "project/static")
    for path in (ROOT / folder).rglob("*.js")
    if "vendor" not in path.parts  # built files of pinned packages, checked against npm
)


def test_there_are_scripts_to_check():
    assert any(p.name == "client.js" for p in SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_script_parses_as_a_module(script: Path):
    node = shutil.which("node")
    if node is None:
        missing("Node.js is not installed")
    result = subprocess.run(
        [node, "--input-type=module", "--check"],
        input=script.read_text(encoding="utf-8"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
