"""The local store's ``sync_conflicts`` table: conflicts kept for the user under ``manual``.

Part of the local store (``LocalStore.conflicts``): its statements run through the store's
connection and error boundary. What a conflict means and how one is settled is
``worker.conflicts``; this module only reads and writes the rows.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from craftsync.contract.records import now_iso

if TYPE_CHECKING:
    from craftsync.worker.store import LocalStore, Row


class ConflictTable:
    """The conflicts of one local store."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store

    def open(self, entity: str | None = None) -> list[Row]:
        """The conflicts still waiting for a decision, oldest first."""
        where, args = _still_open(entity)
        return self.store.execute(f"SELECT * FROM sync_conflicts WHERE {where} ORDER BY id", args)

    def open_count(self, entity: str | None = None) -> int:
        where, args = _still_open(entity)
        row = self.store.execute_one(f"SELECT count(*) FROM sync_conflicts WHERE {where}", args)
        return int(row[0]) if row else 0

    def add(
        self, entity: str, record_id: str, *, local: dict[str, Any], remote: dict[str, Any],
        base: dict[str, Any] | None, fields: list[str], version: int,
    ) -> None:
        """Keep a conflict for the user; the record waits in status ``conflict`` meanwhile."""
        self.store.execute(
            "INSERT INTO sync_conflicts (entity, record_id, local_data, remote_data, base_data, fields, "
            "remote_version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (entity, record_id, json.dumps(local), json.dumps(remote), json.dumps(base) if base else None,
             json.dumps(fields), version, now_iso()),
        )
        self.store.execute(
            "UPDATE sync_metadata SET sync_status = 'conflict' WHERE entity = ? AND record_id = ?", (entity, record_id)
        )

    def refresh(
        self, entity: str, record_id: str, *, local: dict[str, Any], remote: dict[str, Any], fields: list[str],
        version: int,
    ) -> None:
        """A newer server version of a record still in conflict replaces the old one there."""
        self.store.execute(
            "UPDATE sync_conflicts SET remote_data = ?, remote_version = ?, local_data = ?, fields = ? "
            "WHERE entity = ? AND record_id = ? AND resolved = 0 AND remote_version < ?",
            (json.dumps(remote), version, json.dumps(local), json.dumps(fields), entity, record_id, version),
        )

    def close_agreed(self, entity: str, record_id: str) -> None:
        """The server now agrees with this device where they differed: nothing to decide."""
        self.store.execute(
            "UPDATE sync_conflicts SET resolved = 1, resolution = 'agreed', resolved_at = ? "
            "WHERE entity = ? AND record_id = ? AND resolved = 0",
            (now_iso(), entity, record_id),
        )

    def settle(
        self, conflict_id: int, entity: str, record_id: str, *, use: str, remote: dict[str, Any],
        remote_version: int, agreed: bool, row_gone: bool,
    ) -> None:
        """Record the user's choice: the server version it was made against becomes the base;
        the record stays pending unless the choice is the server's record."""
        self.store.execute(
            "UPDATE sync_metadata SET remote_version = ?, base_data = ?, sync_status = ?, "
            "synced_version = CASE WHEN ? THEN local_version ELSE synced_version END, "
            "deleted_data = CASE WHEN ? THEN deleted_data ELSE NULL END WHERE entity = ? AND record_id = ?",
            (remote_version, None if agreed else json.dumps(remote), "synced" if agreed else "pending", agreed,
             row_gone, entity, record_id),
        )
        self.store.execute("UPDATE sync_conflicts SET resolved = 1, resolution = ?, resolved_at = ? WHERE id = ?",
                           (use, now_iso(), conflict_id))


def _still_open(entity: str | None) -> tuple[str, tuple[Any, ...]]:
    if entity:
        return "resolved = 0 AND entity = ?", (entity,)
    return "resolved = 0", ()
