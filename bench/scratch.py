"""What every bench script needs: a scratch database, worker processes, the load, CPU, percentiles.

The server is KIOSK_BENCH_DATABASE_URL when set, else the embedded PostgreSQL in
.kiosk/bench-pgdata (a Unix socket only). Each script makes its own databases, migrated with
alembic, and drops them at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg

PROJECT_DIR = Path(__file__).resolve().parent.parent
if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))

from kiosk import embedded, migrations  # noqa: E402
from tests.support import Process  # noqa: E402

LOGS = PROJECT_DIR / ".kiosk" / "bench-logs"
# Settings every kiosk process needs; the values only have to be valid.
SECRETS = {
    "KIOSK_ADMIN_TOKEN": "bench-admin-token-0123456789",
    "MP_ACCESS_TOKEN": "bench-access-token",
    "MP_WEBHOOK_SECRET": "bench-webhook-secret",
}


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def stop_cleanly() -> None:
    """SIGTERM and SIGINT (even when started in the background) unwind: processes stopped,
    databases dropped."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


@contextlib.contextmanager
def server() -> Iterator[str]:
    """The URL of the bench PostgreSQL server's `postgres` database."""
    url = os.environ.get("KIOSK_BENCH_DATABASE_URL")
    if url:
        yield url
        return
    with embedded.embedded_server(PROJECT_DIR / ".kiosk" / "bench-pgdata") as url:
        yield url


@contextlib.contextmanager
def database(server_url: str, label: str) -> Iterator[str]:
    """A new database migrated to head, dropped afterwards; yields its URL."""
    name = f"kiosk_bench_{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = embedded.create_database(server_url, name, replace=True)
    try:
        migrations.upgrade(url)
        yield url
    finally:
        embedded.drop_database(server_url, name)


def env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a kiosk child process (API, worker) on `database_url`."""
    return {
        **os.environ,
        **SECRETS,
        "DATABASE_URL": database_url,
        "PYTHONUNBUFFERED": "1",
        "KIOSK_LOG_LEVEL": "WARNING",
        **extra,
    }


def use(database_url: str) -> None:
    """Point this process's kiosk settings at `database_url` (for kiosk.db / kiosk.queue here)."""
    from kiosk.settings import get_settings

    os.environ.update({**SECRETS, "DATABASE_URL": database_url})
    get_settings.cache_clear()


def server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        settings = dict(
            conn.execute(
                "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN "
                "('shared_buffers', 'synchronous_commit', 'fsync', 'max_connections')"
            ).fetchall()
        )
    return (
        f"PostgreSQL {version} (fsync {settings['fsync']}, synchronous_commit "
        f"{settings['synchronous_commit']}, shared_buffers {settings['shared_buffers']})"
    )


# -- processes -------------------------------------------------------------------------------------


class Child(Process):
    """A child process logging to .kiosk/bench-logs, stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        LOGS.mkdir(parents=True, exist_ok=True)
        super().__init__(name, argv, env, LOGS)

    def check(self) -> None:
        """Exit the benchmark, with the end of the child's log, if the child has exited."""
        if not self.alive():
            raise SystemExit(
                f"{self.name} exited with {self.popen.returncode}:\n{self.output()[-2000:]}"
            )


def worker(name: str, app: str, env: dict[str, str], *flags: str) -> Child:
    """`procrastinate --app=APP worker FLAGS` (APP e.g. `bench.apps.kiosk_app`)."""
    return Child(
        name,
        [sys.executable, "-m", "procrastinate", f"--app={app}", "worker", f"--name={name}", *flags],
        env,
    )


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")


def db_now(url: str) -> object:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT clock_timestamp()").fetchone()[0]


def wait_listening(
    conn: psycopg.Connection, workers: Sequence[Child], since: object, timeout: float = 60
) -> None:
    """Wait until every worker has started since `since` and LISTENs (then it is idle, waiting)."""

    def listening() -> bool:
        for child in workers:
            child.check()
        count = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'LISTEN %%' AND backend_start >= %s",
            (since,),
        ).fetchone()[0]
        return count >= len(workers)

    wait_for(listening, timeout, f"{len(workers)} workers listening")


def stop_all(children: Sequence[Child]) -> None:
    for child in children:
        if child.alive():
            child.popen.send_signal(signal.SIGTERM)
    for child in children:
        child.stop()


# -- measuring -------------------------------------------------------------------------------------


def load() -> float:
    """The 1-minute load average (2 cores: 2.0 is a full machine)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy(seconds: float = 1.0) -> float:
    """How busy the machine's cores were over the next `seconds` (0.0 idle, 1.0 all cores full)."""
    busy_before, total_before = cpu_times()
    time.sleep(seconds)
    busy_after, total_after = cpu_times()
    return (busy_after - busy_before) / max(1, total_after - total_before)


def wait_quiet(max_busy: float, max_wait: float) -> float:
    """Wait (up to `max_wait` s) for a second in which the cores are at most `max_busy` busy:
    other people's test suites share this machine. Returns the last busy fraction seen."""
    deadline = time.monotonic() + max_wait
    while True:
        seen = busy(1.0)
        if seen <= max_busy or time.monotonic() >= deadline:
            return seen


class Others:
    """CPU used by everything but our processes over a stretch of time, in cores
    (`ours` = CPU seconds our processes used meanwhile)."""

    def __init__(self) -> None:
        self.busy, self.total = cpu_times()
        self.clock = time.monotonic()

    def cores(self, ours: float) -> float:
        busy, _ = cpu_times()
        elapsed = time.monotonic() - self.clock
        return max(0.0, ((busy - self.busy) / os.sysconf("SC_CLK_TCK") - ours) / elapsed)


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    mem_kb = int(
        next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    )
    return f"{os.cpu_count()} cores, {cpu}, {mem_kb / 1024**2:.0f} GiB RAM"


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (state first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_cpu(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) used so far by these live processes."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat(pid)
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def server_cpu(url: str) -> float:
    """CPU seconds used so far by the PostgreSQL server, when it runs on this machine (else NaN):
    its live processes plus the backends that have exited."""
    try:
        with psycopg.connect(url) as conn:
            (backend,) = conn.execute("SELECT pg_backend_pid()").fetchone()
            postmaster = int(_stat(backend)[1])
        fields = _stat(postmaster)
        ticks = sum(int(f) for f in fields[11:15])
    except (OSError, ValueError, IndexError):
        return math.nan
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat(int(entry.name))
            if int(fields[1]) == postmaster:
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
