"""Child processes of a benchmark run: started with limits raised, always stopped.

Every child is registered with the :class:`Supervisor`, which stops them all on the way
out (normal end, error or Ctrl-C). Children also get ``PR_SET_PDEATHSIG``: should the
runner itself be killed, the kernel terminates them.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import select
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from bench.config import ARTIFACTS, HOST, PYTHON, ROOT

OPEN_FILES = 65536
_PR_SET_PDEATHSIG = 1
REPLY_PREFIX = "BENCH "
HANDSHAKE_TIMEOUT = 30  # Daphne's default is 5 s


def raise_open_files(limit: int = OPEN_FILES) -> int:
    """Raise RLIMIT_NOFILE of this process as far as allowed; returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in ((limit, max(limit, hard)), (min(limit, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, wanted)
            return wanted[0]
        except (ValueError, OSError):
            continue
    return soft


def _child_setup() -> None:
    """Runs in the child before exec: die with the parent, many open files."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    raise_open_files()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def rss_kb(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])
    return total - idle, total


class Profiling:
    """Where ``--profile`` puts py-spy profiles of servers, writers and appenders."""

    directory: Path | None = None

    @classmethod
    def start(cls, name: str, pid: int) -> subprocess.Popen[bytes] | None:
        if cls.directory is None:
            return None
        cls.directory.mkdir(parents=True, exist_ok=True)
        py_spy = Path(PYTHON).parent / "py-spy"
        output = cls.directory / f"{name}.txt"
        argv = [str(py_spy), "record", "--pid", str(pid), "--rate", "100"]
        argv += ["--format", "raw", "--nonblocking", "--output", str(output)]
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @staticmethod
    def stop(profiler: subprocess.Popen[bytes] | None) -> None:
        if profiler is None or profiler.poll() is not None:
            return
        profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            profiler.wait(30)
        except subprocess.TimeoutExpired:
            profiler.kill()
            profiler.wait(10)


class Child:
    """One child process; its output goes to a log file unless it speaks on pipes."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        pipes: bool = False,
        profile: bool = False,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.pipes = pipes
        self.profile = profile
        self.log = ARTIFACTS / f"{name}.log"
        self.process: subprocess.Popen[str] | None = None
        self._log_file: IO[bytes] | None = None
        self._profiler: subprocess.Popen[bytes] | None = None
        self._buffer = ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Child:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE if self.pipes else subprocess.DEVNULL,
            stdout=subprocess.PIPE if self.pipes else self._log_file,
            stderr=self._log_file,
            text=True,
            bufsize=1,
            preexec_fn=_child_setup,  # safe: the runner starts children from one thread
        )
        if self.profile:
            self._profiler = Profiling.start(self.name, self.process.pid)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10) -> None:
        if self.process is None:
            return
        Profiling.stop(self._profiler)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # --- the JSON-line protocol of bench.loadgen, bench.writer and the publishers ---------

    def send(self, command: dict[str, Any]) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def receive(self, timeout: float) -> dict[str, Any]:
        """The next reply line; raises TimeoutError or RuntimeError (child died)."""
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while True:
            while "\n" in self._buffer:
                line, self._buffer = self._buffer.split("\n", 1)
                if line.startswith(REPLY_PREFIX):
                    reply = json.loads(line[len(REPLY_PREFIX) :])
                    if "error" in reply:
                        raise RuntimeError(f"{self.name}: {reply['error']}")
                    return reply
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name} did not answer within {timeout:.0f} s")
            ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
            if ready:
                chunk = os.read(fd, 1 << 20).decode()
                if not chunk:
                    raise RuntimeError(f"{self.name} exited; see {self.log}")
                self._buffer += chunk
            elif not self.alive():
                raise RuntimeError(f"{self.name} exited; see {self.log}")

    def request(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.send(command)
        return self.receive(timeout)


class Supervisor:
    """Starts children and stops every one of them when the block ends."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(self, child: Child) -> Child:
        self.children.append(child)
        return child.start()

    def stop(self, child: Child) -> None:
        child.stop()
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        # Last started first: clients before the servers they talk to.
        while self.children:
            self.children.pop().stop()

    def module(
        self,
        name: str,
        module: str,
        env: dict[str, str],
        *args: str,
        pipes: bool = True,
        profile: bool = False,
    ) -> Child:
        """Start ``python -m module args...`` (under py-spy too with ``--profile``)."""
        argv = [PYTHON, "-m", module, *args]
        return self.start(Child(name, argv, env, pipes=pipes, profile=profile))

    def daphne(self, name: str, app: str, env: dict[str, str], timeout: float = 30) -> Server:
        """Start one Daphne process serving ``app`` and wait until it listens."""
        port = free_port()
        argv = [PYTHON, "-m", "daphne", "-v", "0", "-b", HOST, "-p", str(port)]
        # Handshakes queue up behind each other when thousands connect at once.
        argv += ["--websocket_connect_timeout", str(HANDSHAKE_TIMEOUT), app]
        child = self.start(Child(name, argv, env, profile=True))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.alive():
                raise RuntimeError(f"daphne {name} exited early; see {child.log}")
            try:
                with socket.create_connection((HOST, port), 0.2):
                    return Server(child, port)
            except OSError:
                time.sleep(0.1)
        self.stop(child)
        raise RuntimeError(f"daphne {name} did not listen within {timeout:.0f} s")


class Server:
    """A running Daphne process and its port."""

    def __init__(self, child: Child, port: int) -> None:
        self.child = child
        self.port = port

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.child.pid
