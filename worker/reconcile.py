"""Bringing server records into the local store, merging them with local changes.

A pulled page is applied in one transaction (``apply_page``): records without local changes
(almost all of a bulk pull) are written together; each record with local changes is merged
field by field (``worker.merge``) exactly once, against the local row and metadata read once
for the whole page. What cannot be merged is settled by the run's policy or, under
``manual``, kept for the user in ``sync_conflicts``.

The same ``reconcile`` settles a push answered ``conflict`` and an imported record.
"""

from __future__ import annotations

from typing import Any

from craftsync.contract.records import data_fields
from craftsync.contract.vocabulary import EventType, Policy
from craftsync.worker.canonical import canon
from craftsync.worker.merge import merge
from craftsync.worker.run import Run
from craftsync.worker.store import Row, local_record, loads


def apply_page(run: Run, records: list[dict[str, Any]]) -> int:
    """Apply one page inside the run's write transaction; returns how many records changed something."""
    store, entity, fields = run.store, run.entity, data_fields(run.entity)
    metas = store.metadata(entity, [record["id"] for record in records])
    changed_here = [record_id for record_id, meta in metas.items() if meta["sync_status"] != "synced"]
    # Which rows the device holds: those it changed, and those a tombstone may overwrite
    tombstones = [record["id"] for record in records if record.get("deleted_at") is not None]
    rows = store.rows(entity, list({*changed_here, *tombstones}))
    unchanged, agreed, gone, merged = [], [], [], 0
    for record in records:
        meta = metas.get(record["id"])
        if meta is not None and meta["sync_status"] != "synced":
            merged += reconcile(run, record, meta, rows.get(record["id"]), run.options.policy)
            continue
        if meta is not None and (meta["remote_version"] or 0) >= record["version"]:
            continue  # already have this version (or newer), e.g. from our own push
        if record.get("deleted_at") is None or record["id"] in rows:
            unchanged.append(record)
        else:  # a tombstone does not bring back a removed row; the record keeps it instead
            gone.append((record["id"], {name: record.get(name) for name in fields}))
        local_version = meta["local_version"] if meta is not None else 0
        agreed.append((record["id"], local_version, record["version"]))
    store.upsert(entity, unchanged)
    store.agree(entity, agreed)
    store.keep_tombstones(entity, gone)
    return merged + len(agreed)


def reconcile(run: Run, record: dict[str, Any], meta: Row | None, row: dict[str, Any] | None, policy: Policy) -> bool:
    """Bring one server record into the local store, given the record's local metadata and
    row as they are now; returns whether it changed anything (a version this device
    already has does not)."""
    store, entity, fields = run.store, run.entity, data_fields(run.entity)
    remote = {name: record.get(name) for name in fields}
    version = int(record["version"])
    record_id = remote["id"]
    if meta is None or meta["sync_status"] == "synced":
        if meta is not None and (meta["remote_version"] or 0) >= version:
            return False  # already have this version (or newer), e.g. from our own push
        written = store.write_record(entity, remote)
        store.agree(entity, [(record_id, meta["local_version"] if meta else 0, version)])
        if not written:
            store.keep_tombstones(entity, [(record_id, remote)])
        return True
    local = canon(entity, local_record(meta, row))
    base = canon(entity, loads(meta["base_data"])) if meta["base_data"] else None
    outcome = merge(base, local, remote, fields, policy)  # which fields clash does not depend on the policy
    if meta["sync_status"] == "conflict":
        if outcome.conflicts:
            store.conflicts.refresh(entity, record_id, local=local, remote=remote, fields=outcome.conflicts,
                                    version=version)
            return True
        store.conflicts.close_agreed(entity, record_id)
    if outcome.conflicts:
        run.result.conflicts += 1
        if policy == Policy.MANUAL:
            store.conflicts.add(entity, record_id, local=local, remote=remote, base=base, fields=outcome.conflicts,
                                version=version)
            run.emit(EventType.CONFLICT)
            return True
    written = store.write_record(entity, outcome.record)
    if outcome.record == remote:
        store.agree(entity, [(record_id, meta["local_version"], version)])
    else:  # local changes survive the merge: push them from the new base
        store.keep_pending(entity, record_id, version=version, base=remote)
    if not written:  # the row stays removed: the merged tombstone is what the device holds (and pushes)
        store.keep_tombstones(entity, [(record_id, outcome.record)])
    return True


def reconcile_all(run: Run, records: list[dict[str, Any]], policy: Policy) -> None:
    """Reconcile records the server answered with (a push's conflicts, an import), reading
    their local side once for all of them."""
    ids = [record["id"] for record in records]
    metas, rows = run.store.metadata(run.entity, ids), run.store.rows(run.entity, ids)
    for record in records:
        reconcile(run, record, metas.get(record["id"]), rows.get(record["id"]), policy)
