"""Alembic owns the schema: upgrade, downgrade to base and upgrade again on an empty database."""

import psycopg

from kiosk import migrations


def objects(url: str) -> dict[str, set[str]]:
    with psycopg.connect(url) as conn:
        tables = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        views = {
            r[0] for r in conn.execute("SELECT viewname FROM pg_views WHERE schemaname = 'public'")
        }
        functions = {
            r[0]
            for r in conn.execute(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public'"
            )
        }
        types = {
            r[0]
            for r in conn.execute(
                "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                "LEFT JOIN pg_class c ON c.oid = t.typrelid "
                "WHERE n.nspname = 'public' AND (t.typtype = 'e' OR c.relkind = 'c')"
            )
        }
    return {"tables": tables, "views": views, "functions": functions, "types": types}


def test_upgrade_downgrade_upgrade(scratch_database):
    url = scratch_database()
    migrations.upgrade(url)
    first = objects(url)
    assert {
        "procrastinate_jobs",
        "procrastinate_events",
        "procrastinate_workers",
        "procrastinate_periodic_defers",
        "alembic_version",
    } <= first["tables"]

    migrations.downgrade(url)
    empty = objects(url)
    assert empty["tables"] == {"alembic_version"}
    assert empty["views"] == set() and empty["functions"] == set() and empty["types"] == set()

    migrations.upgrade(url)
    assert objects(url) == first
    with psycopg.connect(url) as conn:
        (version,) = conn.execute(migrations.ALEMBIC_VERSION_QUERY).fetchone()
    assert version == migrations.head_revision()


def test_0022_moves_the_seconds_of_stored_schedules_last(scratch_database):
    """The product's one cron dialect (kiosk/cron.py): a six-field schedule written seconds first
    keeps its ticks with its seconds last; five fields and aliases stay as they are."""
    url = scratch_database()
    migrations.upgrade(url, "0022-1")  # the revision before, whatever the chain
    crons = {
        "every-30s": ("*/30 * * * * *", "* * * * * */30"),
        "at-0s-every-5min": ("0 */5 * * * *", "*/5 * * * * 0"),
        "weekdays": ("15 0 9 * * 1-5", "0 9 * * 1-5 15"),
        "five": ("*/2 * * * *", "*/2 * * * *"),
        "alias": ("@hourly", "@hourly"),
    }

    def stored() -> dict[str, str]:
        with psycopg.connect(url) as conn:
            return dict(conn.execute("SELECT name, cron FROM schedules").fetchall())

    with psycopg.connect(url) as conn:
        for name, (old, _) in crons.items():
            conn.execute(
                "INSERT INTO schedules (name, cron, method, url, timeout_seconds, max_attempts) "
                "VALUES (%s, %s, 'GET', 'http://93.184.215.14/', 10, 1)",
                (name, old),
            )
    migrations.upgrade(url, "0022")
    assert stored() == {name: new for name, (_, new) in crons.items()}
    migrations.downgrade(url, "0022-1")
    assert stored() == {name: old for name, (old, _) in crons.items()}
