"""Conflicts kept for the user (policy ``manual``): listing them and settling them.

Settling writes the chosen record into the host app's table, records the server version
the choice was made against as the new base, and leaves the record pending when it
differs from the server's, so that the next push sends it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Literal

from craftsync.contract.records import InvalidRecord, data_fields, now_iso, validate
from craftsync.worker.engine import as_text
from craftsync.worker.errors import SyncError
from craftsync.worker.store import LocalStore, loads

Choice = Literal["local", "remote", "merged"]
CHOICES: Final = ("local", "remote", "merged")


class ConflictNotFound(SyncError):
    """Raised when no open conflict has the given id."""


class InvalidResolution(SyncError):
    """Raised when a merged record given to settle a conflict is not a valid record."""


@dataclass(frozen=True)
class Conflict:
    id: int
    entity: str
    record_id: str
    fields: list[str]
    local: dict[str, Any] | None
    remote: dict[str, Any]
    base: dict[str, Any] | None
    remote_version: int
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def open_conflicts(store: LocalStore, entity: str | None = None) -> list[Conflict]:
    """The conflicts still waiting for a decision, oldest first."""
    query = "SELECT * FROM sync_conflicts WHERE resolved = 0"
    args: tuple[Any, ...] = ()
    if entity:
        query, args = query + " AND entity = ?", (entity,)
    rows = store.conn.execute(query + " ORDER BY id", args).fetchall()
    return [
        Conflict(
            id=row["id"], entity=row["entity"], record_id=row["record_id"], fields=json.loads(row["fields"]),
            local=loads(row["local_data"]), remote=json.loads(row["remote_data"]), base=loads(row["base_data"]),
            remote_version=row["remote_version"], created_at=row["created_at"],
        )
        for row in rows
    ]


def resolve(store: LocalStore, conflict_id: int, use: Choice, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Settle one conflict with the local record, the remote one, or a merge of both.

    For ``merged``, ``data`` holds the chosen value of each field that should differ from
    the remote record. Returns the record now stored locally.
    """
    conflict = next((c for c in open_conflicts(store) if c.id == conflict_id), None)
    if conflict is None:
        raise ConflictNotFound(f"no open conflict has id {conflict_id}")
    fields = data_fields(conflict.entity)
    if use == "remote":
        chosen = conflict.remote
    elif use == "local":  # the record as it is now: edits made while the conflict was open count
        chosen = {**conflict.remote, **_current_local(store, conflict)}
    else:
        unknown = set(data or {}) - set(fields)
        if unknown:
            raise InvalidResolution(f"not fields of {conflict.entity}: {', '.join(sorted(unknown))}")
        chosen = {**conflict.remote, **(data or {}), "id": conflict.record_id}
    try:
        chosen, _ = validate(conflict.entity, {name: chosen.get(name) for name in fields})
    except InvalidRecord as exc:
        raise InvalidResolution(f"the chosen record is not valid: {exc}") from None
    _store_choice(store, conflict, chosen, use)
    return chosen


def _current_local(store: LocalStore, conflict: Conflict) -> dict[str, Any]:
    fields = data_fields(conflict.entity)
    row = store.conn.execute(
        f"SELECT {', '.join(fields)} FROM {conflict.entity} WHERE id = ?", (conflict.record_id,)
    ).fetchone()
    if row is not None:
        return {name: as_text(row[name]) for name in fields}
    meta = store.conn.execute(
        "SELECT deleted_data, changed_at FROM sync_metadata WHERE entity = ? AND record_id = ?",
        (conflict.entity, conflict.record_id),
    ).fetchone()
    gone = (loads(meta["deleted_data"]) if meta else None) or dict(conflict.local or {})
    gone["deleted_at"] = gone.get("deleted_at") or (meta["changed_at"] if meta else now_iso())
    return gone


def _store_choice(store: LocalStore, conflict: Conflict, chosen: dict[str, Any], use: str) -> None:
    entity, fields = conflict.entity, data_fields(conflict.entity)
    agreed = chosen == {name: conflict.remote.get(name) for name in fields}
    with store.engine_writes() as conn:
        gone = chosen.get("deleted_at") is not None and not conn.execute(
            f"SELECT 1 FROM {entity} WHERE id = ?", (conflict.record_id,)
        ).fetchone()
        if not gone:
            updates = ", ".join(f"{name} = excluded.{name}" for name in fields if name != "id")
            conn.execute(
                f"INSERT INTO {entity} ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))}) "
                f"ON CONFLICT (id) DO UPDATE SET {updates}",
                [chosen.get(name) for name in fields],
            )
        conn.execute(
            "UPDATE sync_metadata SET remote_version = ?, base_data = ?, sync_status = ?, "
            "synced_version = CASE WHEN ? THEN local_version ELSE synced_version END, "
            "deleted_data = CASE WHEN ? THEN deleted_data ELSE NULL END WHERE entity = ? AND record_id = ?",
            (conflict.remote_version, None if agreed else json.dumps(conflict.remote),
             "synced" if agreed else "pending", agreed, gone, entity, conflict.record_id),
        )
        conn.execute(
            "UPDATE sync_conflicts SET resolved = 1, resolution = ?, resolved_at = ? WHERE id = ?",
            (use, now_iso(), conflict.id),
        )
