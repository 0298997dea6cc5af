"""Retention: every table that grows with time loses its old rows, never the ones still in use.

On main nothing deleted webhook_inbox, schedule_runs, exports or admin_audit rows, and outcomes of
jobs deleted by other means lived as long as the longest job retention: each test below failed.
"""

from __future__ import annotations

import pytest

import periodic
from kiosk import retention
from kiosk.jobs import maintenance
from kiosk.settings import SettingsError, get_settings
from tests.support.jobs import Sql


@pytest.fixture
def sql(database_url):
    sql = Sql(database_url)
    yield sql
    sql.close()


@pytest.fixture
def settings_env(monkeypatch):
    """Set KIOSK_* variables for the test; the settings are reloaded, and restored afterwards."""

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield set_env
    monkeypatch.undo()
    get_settings.cache_clear()


def job(sql: Sql, status: str) -> int:
    return sql.value(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, status) "
        "VALUES ('default', 'tests.effect', %s) RETURNING id",
        status,
    )


def inbox_row(sql: Sql, name: str, state: str, age: str, job_id: int | None = None) -> None:
    sql.conn.execute(
        "INSERT INTO webhook_inbox (notification_id, type, resource_id, payload, state, job_id, "
        "received_at, processed_at) "
        "VALUES (%s, 'order', 'ORD01', '{}', %s, %s, now() - %s::interval, "
        "CASE WHEN %s <> 'received' THEN now() - %s::interval END)",
        (name, state, job_id, age, state, age),
    )


def names(sql: Sql, query: str) -> set:
    return {next(iter(row.values())) for row in sql.all(query)}


async def test_settled_inbox_rows_go_received_ones_and_those_of_running_jobs_stay(pool, sql):
    waiting, running, done = job(sql, "todo"), job(sql, "doing"), job(sql, "succeeded")
    inbox_row(sql, "processed-old", "processed", "31 days", done)
    inbox_row(sql, "ignored-old", "ignored", "400 days")  # unknown orders: no job at all
    inbox_row(sql, "processed-job-gone", "processed", "31 days", 999_999)
    inbox_row(sql, "processed-young", "processed", "29 days", done)
    inbox_row(sql, "processed-job-waiting", "processed", "31 days", waiting)
    inbox_row(sql, "processed-job-running", "processed", "31 days", running)
    inbox_row(sql, "received-collapsed", "received", "90 days")  # covered by a waiting job
    inbox_row(sql, "received-job-done", "received", "90 days", done)  # its job failed: not settled

    result = await retention.prune_tables(batch_size=2)  # default: 30 days

    assert result["webhook_inbox"] == 3
    assert names(sql, "SELECT notification_id FROM webhook_inbox") == {
        "processed-young",
        "processed-job-waiting",
        "processed-job-running",
        "received-collapsed",
        "received-job-done",
    }
    # 0 keeps them forever.
    assert (await retention.prune_tables(days={"webhook_inbox": 0}, batch_size=2))[
        "webhook_inbox"
    ] == 0
    assert (await retention.prune_tables(days={"webhook_inbox": 1}))["webhook_inbox"] == 1


async def test_schedule_runs_go_unless_their_job_still_waits_or_runs(pool, sql):
    schedule_id = sql.value(
        "INSERT INTO schedules (name, cron, method, url, timeout_seconds, max_attempts) "
        "VALUES ('every second', '* * * * * *', 'GET', 'https://example.com/', 5, 1) RETURNING id"
    )
    waiting = job(sql, "todo")
    # A day of a per-second cron, a week ago: 86,400 runs on main, forever.
    sql.conn.execute(
        "INSERT INTO schedule_runs (schedule_id, trigger, scheduled_for, outcome, finished_at) "
        "SELECT %s, 'cron', t, 'success', t FROM generate_series(now() - interval '8 days', "
        "now() - interval '7 days 1 second', interval '1 second') AS t",
        (schedule_id,),
    )
    sql.conn.execute(
        "INSERT INTO schedule_runs (schedule_id, trigger, scheduled_for, outcome, job_id) VALUES "
        "(%s, 'manual', now() - interval '9 days', 'retrying', %s), "
        "(%s, 'cron', now() - interval '6 days', 'success', NULL), "
        "(%s, 'cron', now() + interval '1 minute', 'pending', NULL)",
        (schedule_id, waiting, schedule_id, schedule_id),
    )

    result = await retention.prune_tables(batch_size=10_000)  # default: 7 days

    assert result["schedule_runs"] == 86_400
    assert names(sql, "SELECT outcome || ' ' || trigger FROM schedule_runs") == {
        "retrying manual",
        "success cron",
        "pending cron",
    }
    assert sql.value("SELECT count(*) FROM schedule_runs") == 3


async def test_old_exports_go_with_their_csv_unless_still_running(pool, sql):
    running = job(sql, "doing")
    for name, age, status, job_id in [
        ("done-old", "8 days", "done", None),
        ("failed-old", "30 days", "failed", None),
        ("running-old", "8 days", "running", running),
        ("done-young", "6 days", "done", None),
    ]:
        sql.conn.execute(
            "INSERT INTO exports "
            "(id, created_from, created_to, status, requested_by, job_id, created_at) "
            "VALUES (gen_random_uuid(), '2026-01-01Z', '2026-01-02Z', %s, %s, %s, "
            "now() - %s::interval)",
            (status, name, job_id, age),
        )
        sql.conn.execute(
            "INSERT INTO export_chunks (export_id, seq, data) "
            "SELECT id, 0, 'order_id\n'::bytea FROM exports WHERE requested_by = %s",
            (name,),
        )

    result = await retention.prune_tables()  # default: 7 days

    assert result["exports"] == 2
    assert names(sql, "SELECT requested_by FROM exports") == {"running-old", "done-young"}
    assert sql.value("SELECT count(*) FROM export_chunks") == 2  # the CSVs went with their exports


async def test_audit_entries_go_after_their_retention(pool, sql, settings_env):
    sql.conn.execute(
        "INSERT INTO admin_audit (at, actor, action, target) "
        "SELECT now() - n * interval '1 day', 'ana', 'job.retry', 'job:' || n "
        "FROM generate_series(0, 9) AS n"
    )
    assert (await retention.prune_tables())["admin_audit"] == 0  # default: a year
    settings_env(KIOSK_RETAIN_AUDIT_DAYS="5")
    assert (await periodic.prune_tables(timestamp=0))["admin_audit"] == 5
    assert names(sql, "SELECT target FROM admin_audit") == {f"job:{n}" for n in range(5)}


async def test_outcomes_of_jobs_deleted_elsewhere_age_out_on_their_own_setting(
    pool, sql, settings_env
):
    """Failed jobs kept a year made every orphaned outcome live a year on main."""
    for job_id, age in [(999_999, "40 days"), (999_998, "20 days")]:
        sql.conn.execute(
            "INSERT INTO job_outcomes (job_id, attempt, task_name, queue_name, status, started_at, "
            "ended_at, duration_seconds) VALUES (%s, 1, 'tests.effect', 'default', 'succeeded', "
            "now() - %s::interval, now() - %s::interval, 0)",
            (job_id, age, age),
        )
    settings_env(KIOSK_PRUNE_FAILED_DAYS="365")
    assert (await maintenance.prune_jobs()).old_outcomes == 1  # default: 30 days
    assert names(sql, "SELECT job_id FROM job_outcomes") == {999_998}
    settings_env(KIOSK_RETAIN_JOB_OUTCOMES_DAYS="0")
    assert (await maintenance.prune_jobs(outcomes_days=None)).old_outcomes == 0  # 0: kept forever
    assert (await maintenance.prune_jobs(outcomes_days=10)).old_outcomes == 1


def test_retention_settings_are_validated(database_url, settings_env):
    settings_env(KIOSK_RETAIN_WEBHOOK_INBOX_DAYS="0.5")
    with pytest.raises(
        SettingsError,
        match="KIOSK_RETAIN_WEBHOOK_INBOX_DAYS must be 0 .keep forever. or at least 1 day",
    ):
        get_settings()
    settings_env(KIOSK_RETAIN_WEBHOOK_INBOX_DAYS="30", KIOSK_RETAIN_AUDIT_DAYS="-1")
    with pytest.raises(SettingsError, match="KIOSK_RETAIN_AUDIT_DAYS"):
        get_settings()
    settings_env(KIOSK_RETAIN_AUDIT_DAYS="0", KIOSK_EXPORT_KEEP="0")
    with pytest.raises(SettingsError, match="KIOSK_EXPORT_KEEP"):
        get_settings()


def test_the_migration_moves_stored_csvs_into_chunks_and_back(scratch_database):
    """0016 turns each export's one bytea into chunk 0; its downgrade joins the chunks again."""
    import psycopg
    from alembic.script import ScriptDirectory

    from kiosk import migrations

    before = (
        ScriptDirectory.from_config(migrations.alembic_config()).get_revision("0016").down_revision
    )
    url = scratch_database()
    migrations.upgrade(url, before)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO exports (id, created_from, created_to, status, requested_by, content) "
            "VALUES "
            "(gen_random_uuid(), '2026-01-01Z', '2026-01-02Z', 'done', 'done', 'order_id\n1\n'), "
            "(gen_random_uuid(), '2026-01-01Z', '2026-01-02Z', 'pending', 'pending', NULL)"
        )
    migrations.upgrade(url, "0016")
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT e.requested_by, e.size_bytes, c.seq, c.data FROM exports e "
            "LEFT JOIN export_chunks c ON c.export_id = e.id ORDER BY 1"
        ).fetchall()
        assert rows == [("done", 11, 0, b"order_id\n1\n"), ("pending", None, None, None)]
        conn.execute(
            "INSERT INTO export_chunks SELECT id, 1, '2\n' FROM exports WHERE requested_by = 'done'"
        )
    migrations.downgrade(url, before)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT requested_by, content FROM exports ORDER BY 1").fetchall() == [
            ("done", b"order_id\n1\n2\n"),
            ("pending", None),
        ]
