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
