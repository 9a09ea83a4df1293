"""The AI SDK transport's pieces under Node, without a server: hostile frames never throw
and never break the reply being streamed (``tests/aisdk_ws/hostile.mjs``), and the vendored
``ai`` Chat bundle is the build of the pinned npm version."""

from __future__ import annotations

import json
import subprocess

from tests import services
from tests.live import ROOT

VENDOR = ROOT / "durable_sessions" / "static" / "durable_sessions" / "vendor"


def node(*args: str) -> subprocess.CompletedProcess[str]:
    executable = services.require_node_packages()
    return subprocess.run(
        [executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_hostile_server_frames_neither_throw_nor_break_the_reply_stream():
    done = node("tests/aisdk_ws/hostile.mjs")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "ok"


def test_the_vendored_chat_bundle_is_a_fresh_build_of_the_pinned_ai_version():
    pinned = json.loads((ROOT / "tests" / "package.json").read_text())["dependencies"]["ai-7"]
    version = pinned.removeprefix("npm:ai@")
    script = (
        "const { build } = await import('./tools/ai-chat/build.mjs');"
        "process.stdout.write((await build()).code);"
    )
    built = node("--input-type=module", "-e", script)
    assert built.returncode == 0, built.stderr[-3000:]
    committed = (VENDOR / "ai-chat.js").read_text()
    assert committed.startswith(f"// ai {version} ")
    assert committed == built.stdout
    licence = (VENDOR / "ai-chat.LICENSE").read_text()
    assert f"== ai {version} (Apache-2.0)" in licence
