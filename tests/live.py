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
from typing import Any, Self

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
        # A stopped process drains its runs for a second only, unless a test says otherwise.
        {"RESYNC_INTERVAL": 0.5, "RUNNER": "worker", "DRAIN_GRACE": 1.0, **(ds_settings or {})}
    )
    # Same key as this process, so the session cookies made here are valid there.
    env["SECRET_KEY"] = settings.SECRET_KEY
    env["PYTHONUNBUFFERED"] = "1"
    # Plain HTTP on loopback: HTTP clients other than browsers keep no Secure cookie there.
    env["SECURE_COOKIES"] = "0"
    return env


class ManagedProcess:
    """A child process with a log under test-artifacts/, started until it is ready."""

    name = "process"

    def __init__(self, env: dict[str, str], log_name: str) -> None:
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.log = ROOT / "test-artifacts" / log_name
        self.log_offset = 0

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 20) -> Self:
        self.log.parent.mkdir(exist_ok=True)
        # A restart appends to the same log; readiness looks only at what comes after.
        self.log_offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; see {self.log}")
            if self.ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {timeout} s; see {self.log}")

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


class DaphneServer(ManagedProcess):
    """One ``daphne project.asgi:application`` process on a free port."""

    name = "daphne"

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__(env, f"daphne-{self.port}.log")

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            *(sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port)),
            "project.asgi:application",
        ]

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.2):
                return True
        except OSError:
            return False


class AgentWorker(ManagedProcess):
    """One ``manage.py run_agents`` process."""

    name = "agent worker"

    def __init__(self, env: dict[str, str], name: str) -> None:
        self.worker_name = name
        super().__init__(env, f"worker-{name}-{os.getpid()}.log")

    def command(self) -> list[str]:
        return [sys.executable, "manage.py", "run_agents", "--name", self.worker_name]

    def ready(self) -> bool:
        return b"listening" in self.log.read_bytes()[self.log_offset :]
