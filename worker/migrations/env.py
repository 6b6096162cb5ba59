"""Alembic environment of the local store: migrates the connection handed over in attributes.

The caller has opened that connection for a ``BEGIN IMMEDIATE`` transaction (see
``worker.store.migrate``); SQLite's DDL is transactional, so the upgrade is all or nothing.
"""

from __future__ import annotations

from alembic import context

#: Not "alembic_version": the host app may use Alembic for its own tables in the same file.
VERSION_TABLE = "craftsync_schema_version"

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table=VERSION_TABLE, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
connection.commit()
