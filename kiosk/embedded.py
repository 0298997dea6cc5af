"""A private PostgreSQL for development and tests, from the `pgserver` wheel.

It listens on a Unix socket inside the data folder only (no TCP port), so it never clashes with a
PostgreSQL server already running on the machine. Used only when DATABASE_URL is not set.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DIR = PROJECT_DIR / ".kiosk"


@contextlib.contextmanager
def embedded_server(pgdata: Path) -> Iterator[str]:
    """Start (or reuse) the server in `pgdata`; yield the URL of its `postgres` database."""
    warnings.filterwarnings("ignore", module="platformdirs")
    try:
        from pgserver.postgres_server import get_server
    except ImportError as exc:  # pragma: no cover - the `embedded` extra is not installed
        raise SystemExit(
            "kiosk: no DATABASE_URL and no embedded PostgreSQL: install it with "
            "`pip install -e '.[embedded]'` (scripts/bootstrap does), or set DATABASE_URL to a "
            "PostgreSQL server"
        ) from exc

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with get_server(pgdata, cleanup_mode="stop") as server:
        yield server.get_uri()


def database_url(server_url: str, name: str) -> str:
    """The URL of database `name` on the server of `server_url` (a postgresql:// URI)."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path="/" + quote(name)))


def create_database(server_url: str, name: str, *, replace: bool = False) -> str:
    """Create database `name` (dropping it first when `replace`); return its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and replace:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            exists = None
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
