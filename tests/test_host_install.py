"""The package installs from its wheel into a fresh virtualenv and works in a host project.

The wheel must carry every file of both apps (code, migrations, templates, static files)
and nothing of the demo project, the tests or the benchmarks. Installed on its own in a new
virtualenv, it must pass ``check`` and ``migrate`` in the host project of
``tests/host_project`` and serve it under Daphne: an anonymous visitor creates a session over
CSRF-protected HTTP and chats over the websocket with the host's own agent (named by the host's
adapter, run inside the server), an operator granted the console permission logs in, sees the
session in the console and replays the conversation, and a foreign Origin is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from urllib.request import HTTPCookieProcessor, ProxyHandler, Request, build_opener

import pytest
import websockets
from websockets.sync.client import ClientConnection, connect

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent
HOST_PROJECT = Path(__file__).resolve().parent / "host_project"
APPS = ("durable_sessions", "handoff_console")
SESSION_TITLE = "Host install proof"
OPERATOR = ("operator", "operator-host-pw")
REPLY_ENDED = {"message.completed", "message.failed", "message.cancelled"}

# Files of a working tree that are never part of a build.
BUILD_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".ruff_cache",
    "test-artifacts",
    "staticfiles",
    "*.sqlite3*",
)

GRANT_CONSOLE = f"""
import durable_sessions, handoff_console
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

user = get_user_model().objects.create_user({OPERATOR[0]!r}, password={OPERATOR[1]!r})
user.user_permissions.add(
    Permission.objects.get(
        content_type__app_label="durable_sessions", codename="operate_sessions"
    )
)
print(durable_sessions.__file__)
print(handoff_console.__file__)
"""


def run(args: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command to completion; fail the test with its output if it fails."""
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=400,
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}")
    return result.stdout


def app_files(root: Path) -> set[str]:
    """Paths (relative to ``root``) of every file of both apps, as a wheel names them."""
    found = set()
    for app in APPS:
        for path in (root / app).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                found.add(path.relative_to(root).as_posix())
    return found


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A copy: building in place would leave build/ in the working tree, and files left in
    # an old build/ could reach the wheel.
    tree = tmp_path_factory.mktemp("source") / "django-durable-sessions"
    shutil.copytree(ROOT, tree, ignore=BUILD_IGNORE)
    return tree


@pytest.fixture(scope="module")
def wheel(source_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, source_tree],
        cwd=out,
    )
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def host_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv holding the wheel and its dependencies, and nothing of this checkout."""
    venv = tmp_path_factory.mktemp("venv") / "host-venv"
    # No pip inside: this interpreter's pip installs into it (--python), which skips
    # bootstrapping pip and still resolves every dependency from the index and the cache.
    # Byte-compiling all of Django and Twisted up front costs more than the few imports
    # of this test save.
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv.parent)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", python]
    run([*pip, "install", "--quiet", "--no-compile", wheel], cwd=venv.parent)
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def host_env(python: Path, data_dir: Path) -> dict[str, str]:
    """The environment of the host project's processes: its settings, its virtualenv only."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DATABASE_URL", "REDIS_URL"}
        and not k.startswith(("DJANGO_", "DURABLE_SESSIONS"))
    }
    bin_dir = python.parent
    env.update(
        DJANGO_SETTINGS_MODULE="host_site.settings",
        HOST_PROJECT_DATA_DIR=str(data_dir),
        VIRTUAL_ENV=str(bin_dir.parent),
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextmanager
def daphne(python: Path, project: Path, env: dict[str, str], log: Path) -> Iterator[int]:
    """Serve the host project with the virtualenv's Daphne; always stopped on exit."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                python.parent / "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "host_site.asgi:application",
            ],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"daphne exited with {process.returncode}:\n{log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), 0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"daphne did not listen on {port}:\n{log.read_text()}")
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class Browser:
    """A cookie-keeping HTTP client that sends what a browser sends with unsafe requests."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = CookieJar()
        # No proxies: the server is on the loopback interface.
        self.opener = build_opener(ProxyHandler({}), HTTPCookieProcessor(self.jar))

    def cookie(self, name: str) -> str:
        value = next((c.value for c in self.jar if c.name == name), None)
        assert value, f"no {name} cookie yet"
        return value

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)

    def request(
        self, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        """Status, final URL (after redirects) and body of one request."""
        unsafe = {"Origin": self.base, "X-CSRFToken": self.cookie("csrftoken")} if data else {}
        req = Request(self.base + path, data=data, headers={**unsafe, **(headers or {})})
        with self.opener.open(req, timeout=10) as response:
            return response.status, response.url, response.read().decode()


def ws_session(port: int, session_id: str, browser: Browser, *, origin: str | None = None) -> Any:
    return connect(
        f"ws://127.0.0.1:{port}/ws/sessions/{session_id}/?after_seq=0",
        origin=origin or browser.base,
        additional_headers={"Cookie": browser.cookie_header()},
        proxy=None,
        open_timeout=10,
    )


def receive(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=10))


def assert_conversation(frames: list[dict[str, Any]]) -> None:
    """The customer's "hi" and the host's agent streaming its answer under the host's name."""
    log = [f for f in frames if "seq" in f and f["type"] != "ack"]
    assert [f["seq"] for f in log] == list(range(log[0]["seq"], log[0]["seq"] + len(log)))
    created = [f["data"]["message"] for f in log if f["type"] == "message.created"]
    assert [(m["role"], m["author"]["display_name"]) for m in created] == [
        ("user", "Visitor"),
        ("assistant", "Host assistant"),
    ]
    assert created[0]["content"] == "hi"
    deltas = [f["data"]["text"] for f in log if f["type"] == "message.delta"]
    assert "".join(deltas) == "You said: hi"
    assert log[-1]["type"] == "message.completed"
    assert log[-1]["data"]["state"] == "complete"


def test_the_wheel_ships_every_file_of_both_apps_and_nothing_else(
    wheel: Path, source_tree: Path
) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {name.split("/", 1)[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == set(APPS)
    expected = app_files(source_tree)
    assert expected - names == set(), "files of the apps missing from the wheel"
    for app in APPS:
        assert f"{app}/migrations/0001_initial.py" in names
    shipped_assets = {n for n in names if "/templates/" in n or "/static/" in n}
    assert shipped_assets == {n for n in expected if "/templates/" in n or "/static/" in n}
    assert "handoff_console/templates/handoff_console/queue.html" in shipped_assets


def test_a_host_project_runs_the_apps_installed_from_the_wheel(
    wheel: Path, host_python: Path, tmp_path: Path
) -> None:
    project = tmp_path / "host_project"
    shutil.copytree(HOST_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = host_env(host_python, data_dir)
    manage = [host_python, project / "manage.py"]

    # A correctly integrated host raises not even a warning from the apps' checks.
    run([*manage, "check", "--fail-level", "WARNING"], cwd=project, env=env)
    run([*manage, "migrate", "--noinput"], cwd=project, env=env)
    run([*manage, "collectstatic", "--noinput"], cwd=project, env=env)
    shipped_static = [
        name.split("/static/", 1)[1]
        for name in zipfile.ZipFile(wheel).namelist()
        if name.split("/", 1)[0] in APPS and "/static/" in name
    ]
    for name in [*shipped_static, "admin/css/base.css"]:
        assert (data_dir / "static" / name).is_file(), f"{name} was not collected"
    imported = run([*manage, "shell", "-c", GRANT_CONSOLE], cwd=project, env=env).split()
    # Imported from the virtualenv, not from a checkout on the path.
    venv_lib = host_python.parent.parent / "lib"
    assert all(Path(p).is_relative_to(venv_lib) for p in imported[-2:]), imported

    with daphne(host_python, project, env, tmp_path / "daphne.log") as port:
        base = f"http://127.0.0.1:{port}"

        customer = Browser(base)
        _, _, body = customer.request("/csrf/")
        assert json.loads(body)["csrf_token"]
        status, _, body = customer.request(
            "/chat/sessions/",
            data=json.dumps({"title": SESSION_TITLE}).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert status == 201, body
        session_id = json.loads(body)["id"]

        with ws_session(port, session_id, customer) as ws:
            opening = [receive(ws) for _ in range(3)]
            assert [f["type"] for f in opening] == ["snapshot", "session.created", "live"]
            assert opening[0]["you"]["access"] == "owner"
            ws.send(json.dumps({"type": "message.send", "content": "hi", "client_id": "1"}))
            # The ack and the agent's status frames may come between log events; the log
            # frames among them must still be gapless and in order.
            frames = [receive(ws)]
            while frames[-1]["type"] not in REPLY_ENDED:
                frames.append(receive(ws))
        (ack,) = [f for f in frames if f["type"] == "ack"]
        assert (ack["seq"], ack["duplicate"]) == (2, False)
        assert_conversation(frames)

        operator = Browser(base)
        # The console sends a visitor to the login page, which sets the CSRF cookie.
        status, url, _ = operator.request("/console/")
        assert (status, url) == (200, f"{base}/accounts/login/?next=/console/")
        username, password = OPERATOR
        status, url, page = operator.request(
            "/accounts/login/?next=/console/",
            data=urlencode({"username": username, "password": password}).encode(),
        )
        assert (status, url) == (200, f"{base}/console/")
        assert SESSION_TITLE in page

        with ws_session(port, session_id, operator) as ws:
            frames = [receive(ws)]
            while frames[-1]["type"] != "live":
                frames.append(receive(ws))
            assert frames[0]["you"]["access"] == "operator"
            assert_conversation(frames)

        with pytest.raises(websockets.InvalidStatus) as refused:
            with ws_session(port, session_id, customer, origin="http://evil.example"):
                pass
        assert refused.value.response.status_code == 403
