"""The package installs from its wheel into a fresh virtualenv and works in host projects.

The wheel must carry every file of both apps (code, migrations, templates, static files)
and nothing of the demo project, the tests or the benchmarks. Installed on its own in a new
virtualenv, it must pass ``check`` and ``migrate`` in the host project of
``tests/host_project`` and serve it under Daphne: an anonymous visitor creates a session over
CSRF-protected HTTP and chats over the websocket with the host's own agent (named by the host's
adapter, run inside the server), an operator granted the console permission logs in, sees the
session in the console and replays the conversation, and a foreign Origin is refused.

And docs/install.md works as written: a new ``startproject`` with a custom e-mail user model
gets every snippet of that page marked for one of its files, the wheel installed by the
page's own command, and serves the chat widget on its own page, the console, the admin and
the API under Daphne, in Chromium, with no 404, no 500 and no traceback.

``HOST_DJANGO`` (e.g. ``Django==5.2``) pins the Django the virtualenv gets and
``HOST_PYTHON`` names its interpreter (default: this one), for the CI matrix of supported
versions (``.ci/host-matrix``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
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
INSTALL_DOC = (ROOT / "docs" / "install.md").read_text()
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
    """A new virtualenv holding the wheel and its dependencies, and nothing of this checkout,
    installed with the command of docs/install.md."""
    venv = tmp_path_factory.mktemp("venv") / "host-venv"
    # No pip inside: this interpreter's pip installs into it (--python), which skips
    # bootstrapping pip and still resolves every dependency from the index and the cache.
    # Byte-compiling all of Django and Twisted up front costs more than the few imports
    # of this test save.
    interpreter = os.environ.get("HOST_PYTHON") or sys.executable
    run([interpreter, "-m", "venv", "--without-pip", venv], cwd=venv.parent)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", python]
    pinned = [os.environ["HOST_DJANGO"]] if os.environ.get("HOST_DJANGO") else []
    install = [*documented_install(wheel), *pinned, "--quiet", "--no-compile"]
    run([*pip, *install], cwd=venv.parent)
    return python


def documented_install(wheel: Path) -> list[str]:
    """The arguments of install.md's ``pip install`` of a wheel, naming this wheel."""
    found = re.search(r"^pip (install \"dist/[^\"]+\.whl\[[a-z,]+\]\")$", INSTALL_DOC, re.M)
    assert found, "install.md shows no `pip install` of a wheel"
    args = found.group(1).replace('"', "").split()
    return [re.sub(r"^dist/[^\[]+\.whl", str(wheel), a) for a in args]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def host_env(python: Path, data_dir: Path, settings: str = "host_site.settings") -> dict[str, str]:
    """The environment of the host project's processes: its settings, its virtualenv only."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DATABASE_URL", "REDIS_URL"}
        and not k.startswith(("DJANGO_", "DURABLE_SESSIONS"))
    }
    bin_dir = python.parent
    env.update(
        DJANGO_SETTINGS_MODULE=settings,
        HOST_PROJECT_DATA_DIR=str(data_dir),
        VIRTUAL_ENV=str(bin_dir.parent),
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextmanager
def daphne(
    python: Path,
    project: Path,
    env: dict[str, str],
    log: Path,
    app: str = "host_site.asgi:application",
) -> Iterator[int]:
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
                app,
            ],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # A bound for a server that never comes up, not a speed goal: a fresh virtualenv's
        # first start compiles its modules, slowly on a busy machine.
        deadline = time.monotonic() + 120
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


IMPORT_EVERY_MODULE = """
import importlib, pkgutil, durable_sessions, handoff_console
missing = []
for extra in ("channels_redis", "redis", "httpx", "psycopg"):
    try:
        importlib.import_module(extra)
    except ImportError:
        missing.append(extra)
assert missing == ["channels_redis", "redis", "httpx", "psycopg"], missing
for package in (durable_sessions, handoff_console):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if module.name.endswith(("openai_compatible", ".tests")):
            continue  # the "openai" extra's agent
        importlib.import_module(module.name)
print("imported")
"""


def test_the_wheels_metadata_is_written_for_a_package_index(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (metadata_name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(metadata_name).decode()
        names = archive.namelist()
    head, _, description = metadata.partition("\n\n")
    fields = [line.split(": ", 1) for line in head.splitlines() if ": " in line]
    values = {}
    for key, value in fields:
        values.setdefault(key, []).append(value)
    assert values["License-Expression"] == ["BSD-3-Clause"]
    assert values["License-File"] == ["LICENSE"]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert {u.split(",")[0] for u in values["Project-URL"]} >= {"Homepage", "Documentation"}
    for version in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in values["Classifier"]
    for version in ("5.2", "6.0", "6.1"):
        assert f"Framework :: Django :: {version}" in values["Classifier"]
    # The core alone runs one process; servers, Redis and drivers are extras.
    core = [r for r in values["Requires-Dist"] if "extra ==" not in r]
    assert not [r for r in core if r.lower().startswith(("daphne", "channels-redis", "psycopg"))]
    assert set(values["Provides-Extra"]) >= {"redis", "daphne", "postgres"}
    # Every link of the long description works on a package index: absolute.
    links = re.findall(r"\]\(([^)]+)\)", description)
    assert links and all(link.startswith("https://") for link in links), links
    assert "make demo" not in description


def test_the_sdist_builds_the_wheel_and_ships_no_tests(source_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "sdist"
    run([sys.executable, "-m", "build", "--sdist", "--outdir", out, source_tree], cwd=tmp_path)
    (sdist,) = out.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = [n.split("/", 1)[1] for n in archive.getnames() if "/" in n]
    assert "LICENSE" in names and "CHANGELOG.md" in names and "docs/package.md" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "project/"))]
    assert "durable_sessions/static/durable_sessions/widget.js" in names


# --- a new project that follows docs/install.md -------------------------------------------

# The product's own user model: logs in with an e-mail address, has no username, no name.
EMAIL_USER_MODEL = """
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models


class UserManager(BaseUserManager):
    def create_user(self, email, password=None, **extra):
        user = self.model(email=self.normalize_email(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **extra):
        return self.create_user(email, password, is_staff=True, is_superuser=True, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(unique=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    objects = UserManager()
"""
ADMIN = ("boss@example.com", "boss-host-pw")
DOC_SNIPPET = re.compile(r"^( *)```\w+ file=(\S+)\n(.*?)^\1```", re.M | re.S)


def doc_snippets(text: str) -> list[tuple[str, str]]:
    """``(file, code)`` of every fenced block of a doc marked ``file=<path>``, in order."""
    found = []
    for match in DOC_SNIPPET.finditer(text):
        indent = len(match.group(1))
        code = "".join(line[indent:] for line in match.group(3).splitlines(keepends=True))
        found.append((match.group(2), code))
    return found


def follow_install_doc(project: Path) -> set[str]:
    """Copy install.md's snippets into a new project: settings snippets are appended (each
    replaces the setting it names), other files are written whole. Returns the files."""
    written: set[str] = set()
    for name, code in doc_snippets(INSTALL_DOC):
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("settings.py"):
            with path.open("a") as out:
                out.write("\n" + code)
        else:
            assert name not in written, f"install.md writes {name} twice"
            path.write_text(code)
        written.add(name)
    return written


class Responses:
    """Every HTTP response a browser page got, to assert that none was a 404 or a 500."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []
        self.errors: list[str] = []

    def watch(self, page: Any) -> Any:
        page.on("response", lambda r: self.seen.append((r.status, r.url)))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        return page

    def failures(self) -> list[tuple[int, str]]:
        # The browser's own guess at an icon is the host's business, not the apps'.
        return [(s, u) for s, u in self.seen if s >= 400 and not u.endswith("/favicon.ico")]


def test_a_new_project_following_install_md_serves_every_page(
    host_python: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    from tests import services
    from tests.conftest import CHROMIUM_ARGS

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = host_env(host_python, data_dir, settings="mysite.settings")
    project = tmp_path / "mysite"
    project.mkdir()
    bin_dir = host_python.parent
    run([bin_dir / "django-admin", "startproject", "mysite", project], cwd=tmp_path, env=env)
    manage = [host_python, project / "manage.py"]
    run([*manage, "startapp", "accounts"], cwd=project, env=env)
    (project / "accounts" / "models.py").write_text(EMAIL_USER_MODEL)

    written = follow_install_doc(project)
    assert {"mysite/settings.py", "mysite/urls.py", "mysite/asgi.py"} <= written
    assert "templates/support.html" in written
    with (project / "mysite" / "settings.py").open("a") as out:
        out.write('\nINSTALLED_APPS += ["accounts"]\nAUTH_USER_MODEL = "accounts.User"\n')

    # "A host configured as on this page passes manage.py check --fail-level WARNING."
    run([*manage, "check", "--fail-level", "WARNING"], cwd=project, env=env)
    run([*manage, "makemigrations", "accounts"], cwd=project, env=env)
    run([*manage, "migrate", "--noinput"], cwd=project, env=env)
    admin_env = {**env, "DJANGO_SUPERUSER_EMAIL": ADMIN[0], "DJANGO_SUPERUSER_PASSWORD": ADMIN[1]}
    run([*manage, "createsuperuser", "--noinput"], cwd=project, env=admin_env)
    # Installed without the redis, postgres and openai extras, every module still imports.
    assert "imported" in run([*manage, "shell", "-c", IMPORT_EVERY_MODULE], cwd=project, env=env)

    log = tmp_path / "daphne.log"
    responses = Responses()
    with (
        daphne(host_python, project, env, log, app="mysite.asgi:application") as port,
        sync_playwright() as playwright,
    ):
        base = f"http://127.0.0.1:{port}"
        chromium = playwright.chromium.launch(
            executable_path=services.require_chromium(), args=CHROMIUM_ARGS
        )
        customer = responses.watch(chromium.new_context(base_url=base).new_page())
        customer.goto("/support/")
        # The launcher shows before the widget's module has wired it up.
        customer.wait_for_selector("[data-ds-chat][data-ready=true]")
        customer.get_by_role("button", name="Chat").click()
        customer.fill("#ds-chat-text", "hi")
        customer.press("#ds-chat-text", "Enter")
        reply = ".ds-chat-log li[data-role=assistant][data-state=complete]"
        customer.wait_for_selector(reply, timeout=60_000)

        operator = responses.watch(chromium.new_context(base_url=base).new_page())
        operator.goto("/console/")
        assert operator.url == f"{base}/accounts/login/?next=/console/"
        operator.fill("input[name=username]", ADMIN[0])
        operator.fill("input[name=password]", ADMIN[1])
        operator.click("button[type=submit]")
        operator.wait_for_url(f"{base}/console/")
        operator.wait_for_selector("#feed-status[data-state=live]", timeout=30_000)
        session_id = customer.evaluate("window.durableChatWidget.client.sessionId")
        operator.goto(f"/console/sessions/{session_id}/")
        operator.wait_for_selector("#feed-status", timeout=30_000)
        # The operator answers (taking over): the customer sees the team, not the e-mail.
        status = operator.evaluate(
            """async (url) => {
                const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
                const response = await fetch(url, {
                    method: "POST",
                    headers: {"Content-Type": "application/json", "X-CSRFToken": token},
                    body: JSON.stringify({content: "A person here"}),
                });
                return response.status;
            }""",
            f"/chat/sessions/{session_id}/messages/",
        )
        assert status == 201
        said = customer.wait_for_selector(".ds-chat-log li[data-role=operator]", timeout=30_000)
        assert said.query_selector(".ds-chat-author").text_content() == "Support"
        assert ADMIN[0] not in (customer.text_content(".ds-chat-panel") or "")

        for path in [
            "/admin/",
            "/admin/durable_sessions/durablesession/?q=hi",
            f"/admin/durable_sessions/durablesession/{session_id}/change/",
            "/admin/handoff_console/operatornote/?q=boss",
            "/chat/api/docs/",
            "/chat/api/schema/",
            "/chat/sessions/",
        ]:
            page_response = operator.goto(path)
            assert page_response is not None and page_response.status == 200, path
        chromium.close()

    assert responses.failures() == []
    assert responses.errors == []
    served = {url.split(base, 1)[1] for _, url in responses.seen}
    for asset in [
        "/static/durable_sessions/widget.js",
        "/static/durable_sessions/widget.css",
        "/static/durable_sessions/client.js",
        "/static/handoff_console/console.css",
        "/static/admin/css/base.css",
    ]:
        assert asset in served, asset
    server_log = log.read_text()
    assert "Traceback" not in server_log, server_log
