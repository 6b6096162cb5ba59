"""Conflicts kept for the user (policy ``manual``): listing them and settling them.

Settling writes the chosen record into the host app's table, records the server version
the choice was made against as the new base, and leaves the record pending when it
differs from the server's, so that the next push sends it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from craftsync.contract.records import InvalidRecord, data_fields, validate
from craftsync.contract.vocabulary import Resolution, values
from craftsync.worker.canonical import as_text
from craftsync.worker.errors import SyncError
from craftsync.worker.store import LocalStore, local_record, loads

#: How the user may settle a conflict (the vocabulary's ``Resolution``).
Choice = Resolution
CHOICES: Final = values(Resolution)


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
    return [
        Conflict(
            id=row["id"], entity=row["entity"], record_id=row["record_id"], fields=json.loads(row["fields"]),
            local=loads(row["local_data"]), remote=json.loads(row["remote_data"]), base=loads(row["base_data"]),
            remote_version=row["remote_version"], created_at=row["created_at"],
        )
        for row in store.conflicts.open(entity)
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
    """The local record as it is now: its row, or for a hard-deleted one its tombstone."""
    row = store.rows(conflict.entity, [conflict.record_id]).get(conflict.record_id)
    if row is not None:
        return {name: as_text(value) for name, value in row.items()}
    meta = store.metadata(conflict.entity, [conflict.record_id]).get(conflict.record_id)
    if meta is None:  # cannot happen: a record in conflict has its metadata; keep what the conflict saw
        return dict(conflict.local or {})
    return local_record(meta, None)


def _store_choice(store: LocalStore, conflict: Conflict, chosen: dict[str, Any], use: str) -> None:
    entity, record_id, fields = conflict.entity, conflict.record_id, data_fields(conflict.entity)
    agreed = chosen == {name: conflict.remote.get(name) for name in fields}
    with store.engine_writes():
        gone = chosen.get("deleted_at") is not None and not store.row_exists(entity, record_id)
        if not gone:
            store.upsert(entity, [chosen])
        store.conflicts.settle(conflict.id, entity, record_id, use=use, remote=conflict.remote,
                               remote_version=conflict.remote_version, agreed=agreed, row_gone=gone)
