"""pytest plugin: a real PostgreSQL, a fresh database migrated by alembic, clean tables per test.

Every fixture is lazy: a test that asks for none of them (the unit tier) starts no server.

The server is KIOSK_TEST_DATABASE_URL or DATABASE_URL when set, else the embedded one (pgserver)
in .kiosk/test-pgdata. Each session creates its own database on it and drops it at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from kiosk import embedded, migrations
from kiosk.settings import get_settings
from tests.support.config import ACCESS_TOKEN, ADMIN_TOKEN, SECRET_KEY, WEBHOOK_SECRET
from tests.support.processes import PROJECT_DIR, child_env

# Tables whose rows survive a clean-up: alembic's bookkeeping.
KEEP_TABLES = {"alembic_version"}


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    url = os.environ.get("KIOSK_TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    with embedded.embedded_server(PROJECT_DIR / ".kiosk" / "test-pgdata") as url:
        yield url


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    name = f"kiosk_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = embedded.create_database(server_url, name, replace=True)
    os.environ.update(
        {
            "DATABASE_URL": url,
            "KIOSK_ADMIN_TOKEN": ADMIN_TOKEN,
            "MP_ACCESS_TOKEN": ACCESS_TOKEN,
            "MP_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "KIOSK_SECRET_KEY": SECRET_KEY,
        }
    )
    get_settings.cache_clear()
    migrations.upgrade(url)
    yield url
    embedded.drop_database(server_url, name)


@pytest.fixture(scope="session")
def scratch_database(server_url: str) -> Iterator[callable]:
    """Factory for extra empty databases (migration tests), dropped at the end."""
    names: list[str] = []

    def make() -> str:
        name = f"kiosk_scratch_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        names.append(name)
        return embedded.create_database(server_url, name, replace=True)

    yield make
    for name in names:
        embedded.drop_database(server_url, name)


# Every table but alembic's, and whether one of its sequences handed out a value (TRUNCATE ...
# RESTART IDENTITY leaves it unread: the next test's ids start at 1 again).
_TABLES = """
SELECT format('%%I', c.relname) AS name,
       EXISTS (SELECT FROM pg_depend AS d
               JOIN pg_class AS s ON s.oid = d.objid
               WHERE d.refobjid = c.oid AND d.deptype IN ('a', 'i')
                 -- CASE: the function is never called on a relation that is no sequence
                 AND CASE WHEN s.relkind = 'S' THEN pg_sequence_last_value(s.oid) END IS NOT NULL
              ) AS sequence_used
FROM pg_class AS c
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
  AND NOT c.relname = ANY(%(keep)s)
"""


def truncate_all(database_url: str) -> None:
    """Empty every table but alembic's and restart their sequences. Only the tables a test left
    something in (a row, a sequence value) are truncated: all of them took ~150 ms a test."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = conn.execute(_TABLES, {"keep": sorted(KEEP_TABLES)}).fetchall()
        dirty = {name for name, sequence_used in tables if sequence_used}
        if tables:  # names from the catalog, quoted by format('%I'), not from input
            dirty.update(
                row[0]
                for row in conn.execute(
                    " UNION ALL ".join(
                        f"SELECT '{name}' WHERE EXISTS (SELECT FROM {name})" for name, _ in tables
                    )
                )
            )
        if dirty:
            conn.execute(f"TRUNCATE {', '.join(sorted(dirty))} RESTART IDENTITY CASCADE")


@pytest.fixture(autouse=True)
def clean_db(request: pytest.FixtureRequest) -> None:
    """Every test that touches the session database starts from empty tables."""
    if "database_url" in request.fixturenames:
        truncate_all(request.getfixturevalue("database_url"))


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    """Environment for child processes (API, workers) pointed at the test database."""
    return child_env(database_url)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator:
    """The kiosk pool opened in this process, shared with procrastinate, as the API does."""
    from kiosk import db, queue

    kiosk_pool = db.create_pool(min_size=1, max_size=5)
    await kiosk_pool.open(wait=True)
    await queue.app.open_async(kiosk_pool)
    yield kiosk_pool
    await queue.app.close_async()
    await db.close_pool()
