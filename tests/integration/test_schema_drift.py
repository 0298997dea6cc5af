"""The procrastinate objects alembic creates equal what `procrastinate schema --apply` creates.

kiosk's own indexes on procrastinate's tables are named `kiosk_*` and left out of the comparison.

When a procrastinate upgrade brings a migration, this fails until a revision applies it
(docs/migrations.md).
"""

import subprocess
import sys

import psycopg

from kiosk import migrations
from tests.support import PROJECT_DIR

CATALOG = {
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND c.relname LIKE 'procrastinate%%' AND c.relkind IN ('r', 'v')
          AND a.attnum > 0 AND NOT a.attisdropped""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace
          AND conrelid::regclass::text LIKE 'procrastinate%%'""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename LIKE 'procrastinate%%'
          AND indexname NOT LIKE 'kiosk\\_%%'""",
    "functions": """
        SELECT p.oid::regprocedure::text, md5(pg_get_functiondef(p.oid)) FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'procrastinate%%'""",
    "types": """
        SELECT t.typname, coalesce(string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder), '')
        FROM pg_type t LEFT JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE t.typnamespace = 'public'::regnamespace AND t.typname LIKE 'procrastinate%%'
          AND t.typtype IN ('e', 'c') GROUP BY t.typname""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger
        WHERE NOT tgisinternal AND tgname LIKE 'procrastinate%%'""",
}


def snapshot(url: str) -> dict[str, set[tuple]]:
    with psycopg.connect(url) as conn:
        return {
            name: set(map(tuple, conn.execute(query).fetchall())) for name, query in CATALOG.items()
        }


def test_alembic_schema_matches_procrastinate_schema(scratch_database):
    by_alembic = scratch_database()
    migrations.upgrade(by_alembic)

    by_procrastinate = scratch_database()
    subprocess.run(
        [sys.executable, "-m", "procrastinate", "--app=tasks.app", "schema", "--apply"],
        env={
            "DATABASE_URL": by_procrastinate,
            "KIOSK_ADMIN_TOKEN": "x" * 20,
            "MP_ACCESS_TOKEN": "t",
            "MP_WEBHOOK_SECRET": "s",
            "PATH": "/usr/bin:/bin",
        },
        cwd=PROJECT_DIR,
        check=True,
        capture_output=True,
        timeout=120,
    )

    ours, theirs = snapshot(by_alembic), snapshot(by_procrastinate)
    for kind in CATALOG:
        missing, extra = theirs[kind] - ours[kind], ours[kind] - theirs[kind]
        assert not missing and not extra, (
            f"procrastinate {kind} differ from alembic's: missing {sorted(missing)}, "
            f"extra {sorted(extra)} - add a revision per new procrastinate migration "
            "(docs/migrations.md)"
        )
