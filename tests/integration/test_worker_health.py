"""Worker liveness: `kiosk worker-health` (a container health check) and GET /health/workers."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import httpx
import psycopg

from tests.support import PROJECT_DIR, Api, Worker, child_env, wait_for

HOST = socket.gethostname()


def worker_health(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kiosk.cli", "worker-health", *args],
        env=env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stdout.splitlines()
    assert len(lines) == 1, (result.stdout, result.stderr)
    return lines[0]


def becomes(env: dict[str, str], code: int, *args: str, timeout: float = 60) -> str:
    """Run worker-health until it exits with `code`; return its line."""
    result = wait_for(
        lambda: (r := worker_health(env, *args)).returncode == code and r,
        timeout=timeout,
        interval=0.5,
        what=f"kiosk worker-health to exit {code}",
    )
    return one_line(result)


def named_connections(database_url: str, prefix: str) -> list[dict]:
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(
            "SELECT application_name, query FROM pg_stat_activity "
            "WHERE datname = current_database() AND starts_with(application_name, %s)",
            (prefix,),
        ).fetchall()


def test_worker_health_follows_a_live_worker_of_this_host(env, log_dir, database_url):
    line = one_line(result := worker_health(env))
    assert result.returncode == 1
    assert line == f"unhealthy: no worker process of host {HOST} is connected to the database"

    worker = Worker(env, log_dir)
    try:
        line = becomes(env, 0)
        assert line.startswith(f"ok: 1 worker process(es) of host {HOST} active"), line
        # Its pool and its LISTEN connection carry the process name; that is how it is found.
        rows = named_connections(database_url, f"kiosk-worker:{HOST}:")
        assert {r["application_name"] for r in rows} == {f"kiosk-worker:{HOST}:{worker.pid}"}
        assert any(r["query"].startswith("LISTEN") for r in rows), rows
        # Another host's check does not see this worker.
        other = worker_health(env, "--host", "another-container")
        assert other.returncode == 1
        assert "no worker process of host another-container" in one_line(other)
    finally:
        assert worker.stop() == 0, worker.output()
    assert becomes(env, 1).startswith("unhealthy: no worker process")


def test_worker_health_fails_when_the_worker_hangs(env, log_dir):
    env = {**env, "KIOSK_WORKER_STALE_SECONDS": "15"}
    worker = Worker(env, log_dir)
    try:
        becomes(env, 0)
        worker.signal(signal.SIGSTOP)  # a blocked event loop: connections stay open, go quiet
        line = becomes(env, 1, timeout=90)
        # Both say the hung worker is unhealthy; which check notices first depends on timing.
        assert (
            f"worker connections of host {HOST} have been idle" in line
            or "no worker heartbeat in the last 15s" in line
        ), line
    finally:
        worker.signal(signal.SIGCONT)
        worker.stop()


def test_worker_health_fails_when_the_database_is_down(database_url):
    env = child_env("postgresql://postgres@127.0.0.1:1/none?connect_timeout=1")
    result = worker_health(env)
    assert result.returncode == 1
    assert one_line(result) == "unhealthy: database unavailable: OperationalError"


def test_health_workers_endpoint_counts_fresh_heartbeats(env, log_dir, database_url):
    api = Api(env, log_dir)
    worker = None
    try:
        url = f"{api.url}/health/workers"
        down = httpx.get(url, timeout=10)
        assert down.status_code == 503
        assert down.json() == {
            "detail": "no worker heartbeat in the last 30s",
            "fresh": 0,
            "stale": 0,
            "stale_after_seconds": 30,
        }

        worker = Worker(env, log_dir)
        up = wait_for(
            lambda: (r := httpx.get(url, timeout=10)).status_code == 200 and r,
            timeout=60,
            what="a fresh heartbeat",
        )
        assert up.json() == {"status": "ok", "fresh": 1, "stale": 0, "stale_after_seconds": 30}
        # The API names its own connections too.
        assert named_connections(database_url, f"kiosk-api:{HOST}:")
        assert worker.stop() == 0
        worker = None

        # A worker that died without unregistering: its row stays until pruned, stale.
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO procrastinate_workers (last_heartbeat) "
                "VALUES (now() - interval '5 minutes')"
            )
        stale = wait_for(
            lambda: (r := httpx.get(url, timeout=10)).status_code == 503 and r,
            timeout=30,
            what="503 once the worker is gone",
        )
        assert stale.json()["fresh"] == 0 and stale.json()["stale"] == 1
    finally:
        if worker:
            worker.stop()
        api.stop()


def test_health_workers_is_503_when_the_database_is_down(database_url, log_dir):
    api = Api(child_env("postgresql://postgres@127.0.0.1:1/none?connect_timeout=1"), log_dir)
    try:
        response = httpx.get(f"{api.url}/health/workers", timeout=15)
        assert response.status_code == 503
        assert response.json() == {"detail": "database unavailable"}
    finally:
        api.stop()
