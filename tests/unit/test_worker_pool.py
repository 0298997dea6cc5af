"""The worker's pool: procrastinate's pool factory call keeps kiosk's connection check."""

from __future__ import annotations

import psycopg_pool

from kiosk import db


async def test_procrastinates_check_does_not_replace_kiosks(settings_env):
    # procrastinate's PsycopgConnector calls the pool factory with psycopg's own check (a round
    # trip before every checkout); kiosk's skips it for a connection used moments ago.
    pool = db.create_pool(role="worker", check=psycopg_pool.AsyncConnectionPool.check_connection)
    try:
        assert pool._check is db._check_if_idle
    finally:
        db._pool = None
