"""Alembic from Python: `kiosk migrate`, the readiness check and the tests use these."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import psycopg
from alembic.config import Config
from alembic.script import ScriptDirectory

from alembic import command
from kiosk.db import application_name
from kiosk.settings import load_or_exit

ALEMBIC_VERSION_QUERY = "SELECT version_num FROM alembic_version"
# Session advisory lock held while migrating: one `kiosk migrate` at a time per database.
MIGRATION_LOCK_KEY = 0x6B696F736B  # "kiosk"


def _alembic_dir() -> Path:
    # A checkout or an image that copied the repository: alembic/ sits beside kiosk/.
    for base in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if (base / "alembic" / "env.py").is_file():
            return base
    raise FileNotFoundError("alembic/ not found beside kiosk/ or in the working directory")


def sqlalchemy_url(database_url: str | None = None) -> str:
    """DATABASE_URL in the form SQLAlchemy wants for psycopg 3."""
    url = database_url or load_or_exit().database_url
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg://{rest}"


def alembic_config(database_url: str | None = None) -> Config:
    base = _alembic_dir()
    config = Config(str(base / "alembic.ini"))
    config.set_main_option("script_location", str(base / "alembic"))
    if database_url:
        config.attributes["database_url"] = sqlalchemy_url(database_url)
    return config


@contextlib.contextmanager
def exclusive(database_url: str | None = None) -> Iterator[None]:
    """Wait until no other `kiosk migrate` runs on this database, and keep it so.

    Deploys may start two at once (the API's and the worker's pre-deploy command, or a rerun):
    the second waits, then finds the schema at head and does nothing, instead of failing halfway
    on objects the first one created.
    """
    url = database_url or load_or_exit().database_url
    with psycopg.connect(
        url, autocommit=True, application_name=application_name("migrate")
    ) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    with exclusive(database_url):
        command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str | None = None, revision: str = "base") -> None:
    with exclusive(database_url):
        command.downgrade(alembic_config(database_url), revision)


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"alembic has {len(heads)} heads, expected one: {heads}")
    return heads[0]


def run_sql(sql: str) -> None:
    """Run a SQL script verbatim inside the current migration's transaction.

    Goes to the psycopg connection directly so that SQLAlchemy does not read `:name` or `%` in
    PL/pgSQL bodies as parameters.
    """
    from alembic import op

    dbapi = op.get_bind().connection.dbapi_connection
    if dbapi is None:
        raise RuntimeError("the migration's database connection is closed")
    dbapi.execute(sql)
