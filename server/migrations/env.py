"""Alembic environment: migrates the engine handed over in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from craftsync.server.db import make_engine, migration_lock
from craftsync.server.schema import metadata

config = context.config
target_metadata = metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine") or make_engine(config.get_main_option("sqlalchemy.url"))
    # write=True: on SQLite the upgrade is one BEGIN IMMEDIATE transaction, which takes the
    # file's write lock before Alembic reads the current revision, so that concurrent
    # servers take turns; the other backends take an advisory lock for the same purpose.
    with engine.connect().execution_options(write=True) as connection, migration_lock(connection):
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
