"""The host app's three tables, change capture, and the sync bookkeeping tables.

The host app may already have its tables, with rows: they are kept, missing columns are
added, and every row found is recorded as a local change still to push.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

#: A time-ordered 128-bit id: 48 bits of milliseconds since 1970, then 80 random bits, as hex.
NEW_ID = (
    "(printf('%012x', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))"
    " || lower(hex(randomblob(10))))"
)
NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

COLUMNS = {
    "customers": ["name", "company", "email", "phone", "address", "city", "state", "zip", "country", "notes"],
    "quotes": [
        "quote_number", "customer_id", "project_name", "status", "total_amount", "discount_percent",
        "tax_percent", "notes", "valid_until", "created_by",
    ],
    "orders": [
        "order_number", "quote_id", "customer_id", "status", "order_date", "delivery_date", "total_amount",
        "payment_status", "notes",
    ],
}
NUMBERS = {"quotes": ("quote_number", "Q-"), "orders": ("order_number", "O-")}
TIMES = ["created_at", "updated_at", "deleted_at"]


def _all_columns(entity: str) -> list[str]:
    return ["id", *COLUMNS[entity], *TIMES]


def _create_entity_table(entity: str) -> None:
    columns = ",\n  ".join(f"{name} TEXT" for name in COLUMNS[entity])
    op.execute(
        f"""CREATE TABLE {entity} (
  id TEXT PRIMARY KEY NOT NULL DEFAULT {NEW_ID},
  {columns},
  created_at TEXT DEFAULT ({NOW}),
  updated_at TEXT DEFAULT ({NOW}),
  deleted_at TEXT
)"""
    )


def _add_missing_columns(entity: str, existing: set[str]) -> None:
    for name in [*COLUMNS[entity], *TIMES]:
        if name not in existing:
            op.execute(f"ALTER TABLE {entity} ADD COLUMN {name} TEXT")


def _row_json(entity: str, row: str) -> str:
    pairs = ", ".join(f"'{name}', {row}.{name}" for name in _all_columns(entity))
    return f"json_object({pairs})"


def _capture_triggers(entity: str) -> None:
    """Record every change the host app makes; skip the engine's own (capture_off = 1).

    The first change to a synced record keeps the record as it was (OLD) in base_data: that
    is the last version both sides agreed on, which a three-way merge needs.
    """
    when = "WHEN (SELECT capture_off FROM sync_control WHERE id = 1) = 0"
    status = "CASE WHEN sync_metadata.sync_status = 'conflict' THEN 'conflict' ELSE 'pending' END"
    keep_base = (
        "CASE WHEN sync_metadata.sync_status = 'synced' AND sync_metadata.base_data IS NULL "
        f"THEN {_row_json(entity, 'OLD')} ELSE sync_metadata.base_data END"
    )
    op.execute(
        f"""CREATE TRIGGER craftsync_{entity}_insert AFTER INSERT ON {entity} {when}
BEGIN
  INSERT INTO sync_metadata (entity, record_id, local_version, sync_status, changed_at)
  VALUES ('{entity}', NEW.id, 1, 'pending', {NOW})
  ON CONFLICT (entity, record_id) DO UPDATE SET
    local_version = sync_metadata.local_version + 1, sync_status = {status},
    reason = NULL, deleted_data = NULL, changed_at = excluded.changed_at;
END"""
    )
    op.execute(
        f"""CREATE TRIGGER craftsync_{entity}_update AFTER UPDATE ON {entity} {when}
BEGIN
  INSERT INTO sync_metadata (entity, record_id, local_version, sync_status, changed_at)
  VALUES ('{entity}', NEW.id, 1, 'pending', {NOW})
  ON CONFLICT (entity, record_id) DO UPDATE SET
    local_version = sync_metadata.local_version + 1, sync_status = {status},
    reason = NULL, base_data = {keep_base}, changed_at = excluded.changed_at;
END"""
    )
    op.execute(
        f"""CREATE TRIGGER craftsync_{entity}_delete AFTER DELETE ON {entity} {when}
BEGIN
  INSERT INTO sync_metadata (entity, record_id, local_version, sync_status, deleted_data, changed_at)
  VALUES ('{entity}', OLD.id, 1, 'pending', {_row_json(entity, 'OLD')}, {NOW})
  ON CONFLICT (entity, record_id) DO UPDATE SET
    local_version = sync_metadata.local_version + 1, sync_status = {status},
    reason = NULL, base_data = {keep_base}, deleted_data = excluded.deleted_data,
    changed_at = excluded.changed_at;
END"""
    )


def _numbering_trigger(entity: str) -> None:
    """A new quote or order without a number takes the next one of this device's blocks."""
    field, prefix = NUMBERS[entity]
    op.execute(
        f"""CREATE TRIGGER craftsync_{entity}_number AFTER INSERT ON {entity}
WHEN NEW.{field} IS NULL AND EXISTS (SELECT 1 FROM sync_number_blocks WHERE entity = '{entity}' AND next <= last)
BEGIN
  UPDATE {entity} SET {field} = (
    SELECT printf('{prefix}%06d', next) FROM sync_number_blocks
    WHERE entity = '{entity}' AND next <= last ORDER BY next LIMIT 1)
  WHERE id = NEW.id;
  UPDATE sync_number_blocks SET next = next + 1 WHERE id = (
    SELECT id FROM sync_number_blocks WHERE entity = '{entity}' AND next <= last ORDER BY next LIMIT 1);
END"""
    )


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing_tables = set(inspector.get_table_names())
    found_rows = []
    for entity in COLUMNS:
        if entity in existing_tables:
            _add_missing_columns(entity, {c["name"] for c in inspector.get_columns(entity)})
            found_rows.append(entity)
        else:
            _create_entity_table(entity)

    op.execute(
        """CREATE TABLE sync_metadata (
  id INTEGER PRIMARY KEY,
  entity TEXT NOT NULL,
  record_id TEXT NOT NULL,
  local_version INTEGER NOT NULL DEFAULT 0,
  synced_version INTEGER NOT NULL DEFAULT 0,
  remote_version INTEGER,
  base_data TEXT,
  deleted_data TEXT,
  last_synced_at TEXT,
  sync_status TEXT NOT NULL DEFAULT 'pending',
  reason TEXT,
  changed_at TEXT,
  UNIQUE (entity, record_id)
)"""
    )
    op.execute("CREATE INDEX ix_sync_metadata_pending ON sync_metadata (entity, id) WHERE sync_status = 'pending'")
    op.execute(
        """CREATE TABLE sync_conflicts (
  id INTEGER PRIMARY KEY,
  entity TEXT NOT NULL,
  record_id TEXT NOT NULL,
  local_data TEXT,
  remote_data TEXT NOT NULL,
  base_data TEXT,
  fields TEXT NOT NULL,
  remote_version INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  resolved INTEGER NOT NULL DEFAULT 0,
  resolution TEXT,
  resolved_at TEXT
)"""
    )
    op.execute("CREATE INDEX ix_sync_conflicts_open ON sync_conflicts (entity, record_id) WHERE resolved = 0")
    op.execute("CREATE TABLE sync_cursors (entity TEXT PRIMARY KEY, cursor TEXT NOT NULL, updated_at TEXT NOT NULL)")
    op.execute(
        """CREATE TABLE sync_runs (
  run_id TEXT PRIMARY KEY,
  entity TEXT NOT NULL,
  direction TEXT NOT NULL,
  policy TEXT NOT NULL,
  status TEXT NOT NULL,
  started_at TEXT NOT NULL,
  finished_at TEXT,
  pushed INTEGER NOT NULL DEFAULT 0,
  pulled INTEGER NOT NULL DEFAULT 0,
  conflicts INTEGER NOT NULL DEFAULT 0,
  rejected INTEGER NOT NULL DEFAULT 0,
  error TEXT
)"""
    )
    op.execute("CREATE INDEX ix_sync_runs_started ON sync_runs (started_at)")
    op.execute(
        """CREATE TABLE sync_number_blocks (
  id INTEGER PRIMARY KEY,
  entity TEXT NOT NULL,
  next INTEGER NOT NULL,
  last INTEGER NOT NULL
)"""
    )
    op.execute("CREATE TABLE sync_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    op.execute("CREATE TABLE sync_control (id INTEGER PRIMARY KEY CHECK (id = 1), capture_off INTEGER NOT NULL)")
    op.execute("INSERT INTO sync_control (id, capture_off) VALUES (1, 0)")
    op.execute(f"INSERT INTO sync_state (key, value) VALUES ('device_id', lower(hex(randomblob(16))))")

    for entity in COLUMNS:
        _capture_triggers(entity)
        if entity in NUMBERS:
            _numbering_trigger(entity)
    for entity in found_rows:  # rows the host app made before CraftSync: still to push
        op.execute(
            f"INSERT INTO sync_metadata (entity, record_id, local_version, sync_status, changed_at) "
            f"SELECT '{entity}', id, 1, 'pending', {NOW} FROM {entity}"
        )


def downgrade() -> None:
    for entity in COLUMNS:
        for kind in ("insert", "update", "delete", "number"):
            op.execute(f"DROP TRIGGER IF EXISTS craftsync_{entity}_{kind}")
    for table in ("sync_control", "sync_state", "sync_number_blocks", "sync_runs", "sync_cursors",
                  "sync_conflicts", "sync_metadata"):
        op.execute(f"DROP TABLE {table}")
