"""Every procrastinate migration is named by an alembic revision (the schema comparison against
PostgreSQL: tests/integration/test_schema_drift.py).
"""

from importlib import resources

from tests.support import PROJECT_DIR


def test_newest_procrastinate_migration_is_applied():
    files = sorted(
        p.name
        for p in resources.files("procrastinate.sql.migrations").iterdir()
        if p.name.endswith(".sql")
    )
    revisions = "\n".join(
        p.read_text() for p in (PROJECT_DIR / "alembic" / "versions").glob("*.py")
    )
    assert files[-1] in revisions, (
        f"procrastinate ships migration {files[-1]} that no alembic revision names "
        "(docs/migrations.md)"
    )
