"""Alembic environment: runs every migration online against DATABASE_URL.

kiosk writes its migrations by hand (plain SQL through `op.execute`), so there is no model
metadata; `include_object` still keeps autogenerate away from procrastinate's objects, which only
the procrastinate revisions may touch.
"""

from __future__ import annotations

import logging.config

from sqlalchemy import create_engine, pool

from alembic import context
from kiosk.migrations import sqlalchemy_url

config = context.config
if config.config_file_name and config.attributes.get("configure_logging", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def include_object(obj, name, type_, reflected, compare_to):  # noqa: ANN001
    return not (name or "").startswith("procrastinate_")


def run_migrations_online() -> None:
    url = config.attributes.get("database_url") or sqlalchemy_url()
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=None,
            include_object=include_object,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("kiosk migrations run online only: set DATABASE_URL and run `kiosk migrate`")
run_migrations_online()
