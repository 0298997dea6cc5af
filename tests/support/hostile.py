"""Fixtures for the hostile-input tests: one uvicorn and a simulator for the module, and a
fingerprint of every table so a test can prove that a refused request stored nothing."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.support.config import ADMIN_TOKEN
from tests.support.processes import Api
from tests.support.stack import SimulatorProcess

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Rows that change without any request: none while no worker runs, except these.
VOLATILE = {"alembic_version", "procrastinate_workers"}


_connections: dict[str, psycopg.Connection] = {}


def fingerprint(database_url: str) -> dict[str, tuple[int, str]]:
    """Row count and an md5 of the rows of every table (the tables are small in these tests).

    On one autocommit connection per database, kept (the session's database is dropped WITH
    FORCE): the fuzz test takes two fingerprints per request, and a new connection each time was
    a third of their cost."""
    conn = _connections.get(database_url)
    if conn is None or conn.closed or conn.broken:
        conn = _connections[database_url] = psycopg.connect(database_url, autocommit=True)
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
        )
        if r[0] not in VOLATILE
    ]
    # Table names come from the catalog, not from input.
    union = " UNION ALL ".join(
        f"SELECT '{t}', count(*), coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') "
        f"FROM {t} AS x"
        for t in tables
    )
    return {name: (count, digest) for name, count, digest in conn.execute(union)}


def changed(before: dict, after: dict) -> dict[str, tuple]:
    return {
        t: (before.get(t), after.get(t))
        for t in set(before) | set(after)
        if before.get(t) != after.get(t)
    }


@pytest.fixture(scope="module")
def hostile_api(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """uvicorn with the payment settings, and a Mercado Pago simulator it can charge through."""
    port = int(stack_env["MP_API_BASE_URL"].rsplit(":", 1)[1])
    server = Api(stack_env, tmp_path_factory.mktemp("api"))
    sim = SimulatorProcess(
        stack_env, tmp_path_factory.mktemp("sim"), port, f"{server.url}/webhooks/mercadopago"
    )
    yield server
    sim.stop()
    server.stop()
