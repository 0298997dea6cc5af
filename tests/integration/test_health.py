"""/healthz and /readyz against a real uvicorn process."""

import httpx

from kiosk import migrations
from tests.support import Api, child_env


def test_ready_when_database_answers_and_schema_is_at_head(env, log_dir):
    api = Api(env, log_dir)
    try:
        assert httpx.get(f"{api.url}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{api.url}/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "revision": migrations.head_revision()}
    finally:
        api.stop()


def test_not_ready_when_migrations_are_behind(scratch_database, database_url, log_dir):
    url = scratch_database()
    migrations.upgrade(url, "0001")
    migrations.downgrade(url, "base")
    api = Api(child_env(url), log_dir)
    try:
        response = httpx.get(f"{api.url}/readyz")
        assert response.status_code == 503
        assert "migrations not at head" in response.json()["detail"]
        assert httpx.get(f"{api.url}/healthz").status_code == 200
    finally:
        api.stop()


def test_not_ready_when_database_is_down(database_url, log_dir):
    # Nothing listens on port 1: the pool cannot connect.
    api = Api(child_env("postgresql://postgres@127.0.0.1:1/none?connect_timeout=1"), log_dir)
    try:
        response = httpx.get(f"{api.url}/readyz", timeout=10)
        assert response.status_code == 503
        assert response.json()["detail"].startswith("database unavailable")
        assert httpx.get(f"{api.url}/healthz").status_code == 200
    finally:
        api.stop()
