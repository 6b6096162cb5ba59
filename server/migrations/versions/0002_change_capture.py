"""Change capture: bookkeeping tables kept by triggers, for every writer of the database.

Each entity's ``version``, ``seq`` and ``changed_at`` move out of its table into
``craftsync_<entity>`` (keyed by the row's key), every existing record keeping its version
and its place in the feed, so that devices' cursors stay valid. Triggers then keep it for
the API and for any other program alike. The server's own tables take the ``craftsync_``
prefix, as in a database it adopts.

The triggers here are this revision's own, kept as they were made (each updates the
bookkeeping row itself); revision 0003 replaces them with the change log that
``server/capture.py`` installs today.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from craftsync.server import capture
from craftsync.server.mapping import EntityMap, native

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
        for statement in _triggers(entity_map, capture.backend(bind.dialect)):
            op.execute(statement)


#: The canonical UTC time as each backend's SQL spells it.
_NOW = capture.NOW_SQL


def _triggers(m: EntityMap, d: str) -> list[str]:
    """This revision's triggers: each write upserts the row's bookkeeping row (version + 1,
    pending); a DELETE, or an UPDATE of the key, leaves a tombstone for the old key."""
    q = (lambda name: f"`{name}`") if d == "mysql" else (lambda name: f'"{name}"')
    book, table, key, now = q(m.book), q(m.table), q(m.key), _NOW[d]
    columns = f"{book} (row_key, id, version, seq, changed_at, deleted_at)"
    gone = f"UPDATE {book} SET version = version + 1, seq = NULL, changed_at = {now}, deleted_at = {now}"
    name = f"craftsync_{m.entity}"
    if d == "sqlite":
        upsert = (f"INSERT INTO {columns} VALUES (NEW.{key}, {capture.new_id_sql(m, d, 'NEW.' + key)}, 1, NULL, "
                  f"{now}, NULL) ON CONFLICT (row_key) DO UPDATE SET version = version + 1, seq = NULL, "
                  "changed_at = excluded.changed_at, deleted_at = NULL;")
        return [
            f"CREATE TRIGGER {name}_ins AFTER INSERT ON {table} BEGIN {upsert} END",
            f"CREATE TRIGGER {name}_upd AFTER UPDATE ON {table} BEGIN "
            f"{gone} WHERE row_key = OLD.{key} AND OLD.{key} IS NOT NEW.{key}; {upsert} END",
            f"CREATE TRIGGER {name}_del AFTER DELETE ON {table} BEGIN {gone} WHERE row_key = OLD.{key}; END",
        ]
    if d == "mysql":
        upsert = (f"INSERT INTO {columns} VALUES (NEW.{key}, {capture.new_id_sql(m, d, 'NEW.' + key)}, 1, NULL, "
                  f"{now}, NULL) ON DUPLICATE KEY UPDATE version = version + 1, seq = NULL, "
                  "changed_at = VALUES(changed_at), deleted_at = NULL;")
        return [
            f"CREATE TRIGGER {name}_ins AFTER INSERT ON {table} FOR EACH ROW {upsert}",
            f"CREATE TRIGGER {name}_upd AFTER UPDATE ON {table} FOR EACH ROW BEGIN "
            f"IF NOT (OLD.{key} <=> NEW.{key}) THEN {gone} WHERE row_key = OLD.{key}; END IF; {upsert} END",
            f"CREATE TRIGGER {name}_del AFTER DELETE ON {table} FOR EACH ROW {gone} WHERE row_key = OLD.{key}",
        ]
    upsert = (f"INSERT INTO {book} AS b (row_key, id, version, seq, changed_at, deleted_at) "
              f"SELECT n.{key}, {capture.new_id_sql(m, d, 'n.' + key)}, 1, NULL, {now}, NULL FROM craftsync_new AS n "
              "ON CONFLICT (row_key) DO UPDATE SET version = b.version + 1, seq = NULL, "
              "changed_at = EXCLUDED.changed_at, deleted_at = NULL;")
    gone = f"UPDATE {book} AS b SET version = b.version + 1, seq = NULL, changed_at = {now}, deleted_at = {now}"
    bodies = {
        "ins": (upsert, "INSERT", "NEW TABLE AS craftsync_new"),
        "upd": (f"{gone} FROM (SELECT {key} FROM craftsync_old EXCEPT SELECT {key} FROM craftsync_new) AS o "
                f"WHERE b.row_key = o.{key}; {upsert}", "UPDATE", "OLD TABLE AS craftsync_old NEW TABLE AS craftsync_new"),
        "del": (f"{gone} FROM craftsync_old AS o WHERE b.row_key = o.{key};", "DELETE", "OLD TABLE AS craftsync_old"),
    }
    statements = []
    for op_name, (body, event, referencing) in bodies.items():
        statements.append(f"CREATE FUNCTION {name}_{op_name}() RETURNS trigger LANGUAGE plpgsql AS $body$ BEGIN "
                          f"{body} RETURN NULL; END $body$")
        statements.append(f"CREATE TRIGGER {name}_{op_name} AFTER {event} ON {table} REFERENCING {referencing} "
                          f"FOR EACH STATEMENT EXECUTE FUNCTION {name}_{op_name}()")
    return statements


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
