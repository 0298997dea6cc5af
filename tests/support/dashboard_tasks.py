"""Test-only tasks for the dashboard browser test: `--app=tests.support.dashboard_tasks.app`.

`dashboard_test.flaky` fails until a row with its name exists in `dashboard_test_marker`, so a test
can make a real worker fail a job, then let the retry succeed.
"""

from kiosk import db
from tasks import app

MARKER_TABLE = "CREATE TABLE IF NOT EXISTS dashboard_test_marker (name text PRIMARY KEY)"


@app.task(name="dashboard_test.flaky", queue="dashboard", pass_context=False)
async def flaky(name: str) -> None:
    async with db.transaction() as conn:
        row = await db.fetch_one(
            conn, "SELECT 1 AS ok FROM dashboard_test_marker WHERE name = %(name)s", {"name": name}
        )
    if row is None:
        raise RuntimeError(f"no marker {name!r} yet: failing on purpose")


__all__ = ["app"]
