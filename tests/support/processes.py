"""Helpers for tests that run real processes: uvicorn, procrastinate workers, polling."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

PROJECT_DIR = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# One SSL context for the support helpers' clients: `httpx.get()` or `httpx.Client()` loads the
# CA bundle again each time (~50 ms on this machine, paid again on every poll).
TLS = httpx.create_ssl_context()
# One client for the helpers' requests. No keep-alive: each request opens its own loopback
# connection as before, so nothing stale outlives a server.
HTTP = httpx.Client(verify=TLS, limits=httpx.Limits(max_keepalive_connections=0))


_PORTS = random.SystemRandom()  # not the seeded `random` some tests and tools set
# Ports handed out in this run: a fixture picks a port before its server binds it (the simulator's
# is chosen before uvicorn starts), so a later pick must not land on it while it is still free.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port free now, below the kernel's ephemeral range: a port the OS hands out for
    `bind(0)` can be taken as the source port of an outgoing connection before our server binds
    it ("address already in use"); ports below the range are never handed out that way."""
    ranges = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low = int(ranges.read_text().split()[0]) if ranges.exists() else 32768
    for _ in range(200):
        port = _PORTS.randrange(max(1024, low - 12000), low)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def wait_for(
    condition: Callable[[], T], timeout: float = 30, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll until `condition()` returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last_error = exc
        else:
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})"
    )


def until(condition: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    """Like `wait_for`, but False instead of an error after `timeout`."""
    try:
        return bool(wait_for(condition, timeout=timeout, interval=interval))
    except AssertionError:
        return False


class Process:
    """A child process with its output in a log file, stopped with SIGTERM then SIGKILL."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            argv,
            env=env,
            cwd=PROJECT_DIR,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            self.popen.send_signal(signum)

    def stop(self, timeout: float = 20) -> int:
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self._log.close()
        return self.popen.returncode


class Api(Process):
    """`uvicorn kiosk.app:app` on a free loopback port."""

    def __init__(
        self, env: dict[str, str], log_dir: Path, *, workers: int = 1, wait: str = "/healthz"
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "kiosk.app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        super().__init__("api", argv, env, log_dir)
        if wait:
            wait_for(self._answers(wait), timeout=30, what=f"uvicorn on {self.url}")

    def _answers(self, path: str) -> Callable[[], bool]:
        def check() -> bool:
            if not self.alive():
                raise AssertionError(f"uvicorn exited:\n{self.output()}")
            return HTTP.get(self.url + path, timeout=2).status_code < 500

        return check


class Worker(Process):
    """`procrastinate --app=tasks.app worker` with extra flags."""

    def __init__(self, env: dict[str, str], log_dir: Path, *args: str, name: str = "worker"):
        argv = [sys.executable, "-m", "procrastinate", "--app=tasks.app", "worker", *args]
        super().__init__(name, argv, env, log_dir)


def child_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update({"DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}, **extra)
    return env
