"""Alembic environment of the local store: migrates the connection handed over in attributes."""

from __future__ import annotations

from alembic import context

#: Not "alembic_version": the host app may use Alembic for its own tables in the same file.
VERSION_TABLE = "craftsync_schema_version"

config = context.config
with config.attributes["engine"].connect() as connection:
    context.configure(connection=connection, version_table=VERSION_TABLE, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
