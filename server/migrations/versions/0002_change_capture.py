"""Change capture: bookkeeping tables kept by triggers, for every writer of the database.

Each entity's ``version``, ``seq`` and ``changed_at`` move out of its table into
``craftsync_<entity>`` (keyed by the row's key), every existing record keeping its version
and its place in the feed, so that devices' cursors stay valid. Triggers then keep it for
the API and for any other program alike (``server/capture.py``). The server's own tables
take the ``craftsync_`` prefix, as in a database it adopts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from craftsync.server import capture
from craftsync.server.mapping import native

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ENTITIES = ("customers", "quotes", "orders")
MOVED = ("version", "seq", "changed_at")


def upgrade() -> None:
    bind = op.get_bind()
    op.rename_table("counters", "craftsync_counters")
    op.rename_table("number_blocks", "craftsync_number_blocks")
    for entity in ENTITIES:
        entity_map = native(entity)
        book = capture.book_table(entity_map, sa.MetaData())
        book.create(bind)
        op.execute(
            f"INSERT INTO {book.name} (row_key, id, version, seq, changed_at) "
            f"SELECT id, id, version, seq, changed_at FROM {entity}"
        )
        op.drop_index(f"ix_{entity}_seq", table_name=entity)
        op.drop_index(f"ix_{entity}_changed_at", table_name=entity)
        for column in MOVED:
            _drop_column(entity, column)
        for statement in capture.install_ddl(entity_map, bind.dialect):
            op.execute(statement)


def _drop_column(table: str, column: str) -> None:
    if op.get_bind().dialect.name == "sqlite":  # SQLite 3.35+ drops a column in place
        op.execute(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
    else:
        op.drop_column(table, column)


def downgrade() -> None:
    bind = op.get_bind()
    for entity in ENTITIES:
        entity_map = native(entity)
        for statement in capture.drop_ddl(entity_map, bind.dialect):
            op.execute(statement)
        op.add_column(entity, sa.Column("version", sa.Integer, nullable=False, server_default="1"))
        op.add_column(entity, sa.Column("seq", sa.BigInteger, nullable=False, server_default="0"))
        op.add_column(entity, sa.Column("changed_at", sa.String(24), nullable=False, server_default=""))
        book = entity_map.book
        for column in MOVED:
            op.execute(
                f"UPDATE {entity} SET {column} = (SELECT b.{column} FROM {book} b WHERE b.row_key = {entity}.id)"
            )
        op.create_index(f"ix_{entity}_seq", entity, ["seq"], unique=True)
        op.create_index(f"ix_{entity}_changed_at", entity, ["changed_at"])
        op.drop_table(book)
    op.rename_table("craftsync_number_blocks", "number_blocks")
    op.rename_table("craftsync_counters", "counters")
