"""A real HTTP target on 127.0.0.1 for schedule tests, and small helpers around the admin API."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.support.config import ADMIN_TOKEN
from tests.support.processes import HTTP

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ALLOW_LOOPBACK = {"KIOSK_OUTBOUND_ALLOW_HOSTS": "127.0.0.1,localhost"}
# Dispatch every 2 s and retry after 0.2 s, so a test sees a schedule's runs in seconds.
FAST = {"KIOSK_SCHEDULES_DISPATCH_EVERY": "2", "KIOSK_SCHEDULES_RETRY_BACKOFF_SECONDS": "0.2"}


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)


class Target:
    """Answers by path: /ok, /status/<code>, /flaky/<key> (500 twice, then 200), /hang,
    /big (200 kB), /redirect/same, /redirect/other (to localhost: another origin). Records hits."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.counts: Counter[str] = Counter()
        self.release = threading.Event()
        self.lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(
                self, code: int, body: bytes = b"", headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(code)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with target.lock:
                    target.hits.append(Hit(self.command, self.path, dict(self.headers), body))
                    target.counts[self.path] += 1
                    count = target.counts[self.path]
                path = self.path.split("?")[0]
                if path.startswith("/flaky/"):
                    if count <= 2:
                        self._answer(500, b"temporarily broken")
                    else:
                        self._answer(200, b"recovered")
                elif path.startswith("/status/"):
                    self._answer(int(path.rsplit("/", 1)[1]), b"as asked")
                elif path == "/hang":
                    target.release.wait(30)
                    self._answer(200, b"too late")
                elif path == "/big":
                    self._answer(200, b"x" * 200_000)
                elif path == "/redirect/same":
                    self._answer(302, headers={"Location": "/ok?from=redirect"})
                elif path == "/redirect/other":
                    port = self.server.server_address[1]
                    self._answer(302, headers={"Location": f"http://localhost:{port}/ok"})
                else:
                    self._answer(200, b"ok " + self.path.encode())

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def hits_for(self, prefix: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path.startswith(prefix)]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def create(api_url: str, **fields: object) -> dict:
    response = HTTP.post(f"{api_url}/admin/schedules", json=fields, headers=AUTH, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def runs(api_url: str, schedule_id: int, **params: object) -> dict:
    response = HTTP.get(
        f"{api_url}/admin/schedules/{schedule_id}/runs", params=params, headers=AUTH, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def db_runs(database_url: str, schedule_id: int) -> list[dict]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT * FROM schedule_runs WHERE schedule_id = %s ORDER BY scheduled_for, id",
            (schedule_id,),
        ).fetchall()


def run_row(database_url: str, run_id: int) -> dict | None:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute("SELECT * FROM schedule_runs WHERE id = %s", (run_id,)).fetchone()


def count(database_url: str, query: str, *params: object) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchone()[0]


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """A local HTTP server scheduled requests are sent to (one per module)."""
    server = Target()
    yield server
    server.close()
