"""Real Daphne server processes for end-to-end tests, on the test database."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(
    *, redis_url: str | None = None, ds_settings: dict[str, Any] | None = None
) -> dict[str, str]:
    """Environment for a server process that uses this test run's database."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
        env["DATABASE_URL"] = (
            f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    else:
        env["SQLITE_PATH"] = str(db["NAME"])
    if redis_url:
        env["REDIS_URL"] = redis_url
        env["DS_PROCESSES"] = "2"
    # No agent answers unless a test asks for one (RUNNER "embedded" or a worker process).
    env["DURABLE_SESSIONS_JSON"] = json.dumps(
        {"RESYNC_INTERVAL": 0.5, "RUNNER": "worker", **(ds_settings or {})}
    )
    # Same key as this process, so the session cookies made here are valid there.
    env["SECRET_KEY"] = settings.SECRET_KEY
    env["PYTHONUNBUFFERED"] = "1"
    return env


class DaphneServer:
    """One ``daphne project.asgi:application`` process on a free port."""

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.env = env
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = ROOT / "test-artifacts" / f"daphne-{self.port}.log"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> DaphneServer:
        self.log.parent.mkdir(exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "project.asgi:application",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited early; see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"daphne did not listen on {self.port} within {timeout} s")

    def kill(self) -> None:
        """``kill -9``: no cleanup, no goodbye frames."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class AgentWorker:
    """One ``manage.py run_agents`` process."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        self.env = env
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.log = ROOT / "test-artifacts" / f"worker-{name}-{os.getpid()}.log"

    def start(self, timeout: float = 20) -> AgentWorker:
        self.log.parent.mkdir(exist_ok=True)
        self.log.write_bytes(b"")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "run_agents", "--name", self.name],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early; see {self.log}")
            if b"listening" in self.log.read_bytes():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"worker {self.name} did not start within {timeout} s")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
