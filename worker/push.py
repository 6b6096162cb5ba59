"""Push: local changes to the server in batches, and the server's answers applied locally.

Each record carries ``base_version``, the server version this device last agreed with. The
answers to a batch are applied in one transaction. A record changed again while its batch
was on the wire stays pending; a batch applied by the server whose answer was lost is
re-sent next time and answered ``unchanged``. After a push the device holds exactly the
server's values (spec §6.11): a row the host app wrote as ``1500`` is rewritten as the
server stores it (``1500.00``).

A bulk import (``import_records``) pushes records straight from a CSV chunk, then stores them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from craftsync.contract.records import InvalidRecord, data_fields, validate
from craftsync.contract.vocabulary import Direction, EventType, Policy
from craftsync.worker.canonical import as_text
from craftsync.worker.reconcile import reconcile_all
from craftsync.worker.remote import RemoteClient
from craftsync.worker.run import Run, RunResult, SyncOptions
from craftsync.worker.store import LocalStore, Row, local_record

#: Push passes per run: a record merged after a push conflict is sent again in the next one.
MAX_PUSH_PASSES: Final = 3
#: The server's words for a reference to a record it does not have (server.repository):
#: such a record is not quarantined but sent again, since its parent may arrive later.
REFERENCE_PROBLEM: Final = "refers to no record of"


class _Outgoing(NamedTuple):
    """One record of a batch on its way to the server."""

    meta: Row
    #: The record as sent: every field, canonical, with ``base_version``.
    record: dict[str, Any]
    #: The host app's row as it was read for the push; None for a hard-deleted record.
    row: dict[str, Any] | None


@dataclass
class _Prepared:
    """One batch ready to send: what goes out, what fails validation, what needs no push."""

    outgoing: list[_Outgoing] = field(default_factory=list)
    invalid: list[tuple[Row, str]] = field(default_factory=list)
    forget: list[Row] = field(default_factory=list)


def push(run: Run) -> None:
    """Push every pending record of the run's entity."""
    run.result.total += run.store.pending_count(run.entity)
    for _ in range(MAX_PUSH_PASSES):
        if not _push_pass(run):
            return


def _push_pass(run: Run) -> int:
    """Push every pending record once; returns how many need another pass (merged after a
    conflict). While the server works on one batch, the next is read and validated."""
    store, entity, size = run.store, run.entity, run.options.batch_size
    merged_again = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"push-{entity}") as sender:
        batch = store.pending(entity, after=0, limit=size)
        prepared = _prepare(store, entity, batch)
        while batch:
            outgoing = prepared.outgoing
            answer = sender.submit(run.remote.push, entity, [item.record for item in outgoing]) if outgoing else None
            following = store.pending(entity, after=batch[-1]["id"], limit=size)
            upcoming = _prepare(store, entity, following)
            results = answer.result() if answer else []
            with store.engine_writes():
                store.forget(prepared.forget)
                for meta, reason in prepared.invalid:
                    _reject(run, meta, reason)
                merged_again += _apply_results(run, outgoing, results)
            run.result.done += len(batch)
            run.emit(EventType.PROGRESS)
            batch, prepared = following, upcoming
    return merged_again


def _prepare(store: LocalStore, entity: str, batch: list[Row]) -> _Prepared:
    """Read and validate one batch of pending records (no writes)."""
    prepared = _Prepared()
    rows = store.rows(entity, [meta["record_id"] for meta in batch])
    for meta in batch:
        if meta["deleted_data"] is not None and meta["remote_version"] is None:
            prepared.forget.append(meta)  # created and hard-deleted before it ever reached the server
            continue
        row = rows.get(meta["record_id"]) if meta["deleted_data"] is None else None
        plain = {name: as_text(value) for name, value in local_record(meta, row).items()}
        try:
            local, _ = validate(entity, plain)
        except InvalidRecord as exc:
            prepared.invalid.append((meta, str(exc)))
            continue
        prepared.outgoing.append(_Outgoing(meta, {**local, "base_version": meta["remote_version"]}, row))
    return prepared


def _apply_results(run: Run, outgoing: list[_Outgoing], results: list[dict[str, Any]]) -> int:
    """Apply the server's answers to one batch; returns how many records need another pass.

    Runs in the engine's write transaction, so the host app cannot write between the check
    that a row is as it was read and the rewrite of that row in the server's form."""
    store, entity, fields = run.store, run.entity, data_fields(run.entity)
    current = store.local_versions([item.meta["id"] for item in outgoing])
    agreed, tombstones, conflicts = [], [], []
    for (meta, sent, row), result in zip(outgoing, results, strict=True):
        status = result["status"]
        changed_meanwhile = current.get(meta["id"]) != meta["local_version"]
        if status == "rejected":
            reason = result.get("reason") or "rejected by the server"
            if REFERENCE_PROBLEM in reason:  # the parent is not there yet: try again next push
                store.note_reason(meta["id"], reason)
                run.result.rejected += 1
            elif not changed_meanwhile:
                _reject(run, meta, reason)
            continue
        if status == "conflict":
            conflicts.append(result["record"])
            continue
        run.result.pushed += status != "unchanged"
        stored = {name: (result.get("record") or sent).get(name) for name in fields}
        if changed_meanwhile:  # sent, but edited again since: still pending, from the new base
            store.rebase(meta["id"], version=result["version"], base=stored)
            continue
        # Adopt what the server holds: its numbers, and its spelling of every value the
        # host app wrote another way ('1500' is stored as '1500.00'), so both sides agree.
        if row is not None and any(row.get(name) != stored[name] for name in fields):
            store.upsert(entity, [stored])
        agreed.append((meta["record_id"], meta["local_version"], result["version"]))
        if meta["deleted_data"] is not None:  # kept in the server's form, as a row would be
            tombstones.append((meta["record_id"], stored))
    reconcile_all(run, conflicts, run.options.policy)
    store.agree(entity, agreed)
    # A hard-deleted record keeps its tombstone after agreement: the row stays removed.
    store.keep_tombstones(entity, tombstones)
    return len(conflicts)


def _reject(run: Run, meta: Row, reason: str) -> None:
    """Quarantine a record until it is edited: the rest of the batch goes on."""
    run.store.reject(meta["id"], reason)
    run.result.rejected += 1


def import_records(store: LocalStore, remote: RemoteClient, entity: str, records: list[dict[str, Any]]) -> dict[str, int]:
    """Push one chunk of imported records straight to the server, then store them locally.

    Chunks of one import run in parallel on any number of workers: they take no entity
    lock, since each record is new to this device. Every record carries its id from the
    start, so a chunk delivered twice is answered ``unchanged``. Records the server (or
    validation) refuses are kept locally, quarantined with the reason, as in a push;
    an id the server already holds with other content keeps the server's version.
    """
    fields = data_fields(entity)
    counts = {"created": 0, "unchanged": 0, "rejected": 0, "conflict": 0}
    outgoing, refused = [], []
    for raw in records:
        data = {name: raw.get(name) for name in fields}
        try:
            canonical, _ = validate(entity, data)
            outgoing.append(canonical)
        except InvalidRecord as exc:
            refused.append((data, str(exc)))
    results = remote.push(entity, outgoing) if outgoing else []
    options = SyncOptions(direction=Direction.PUSH, policy=Policy.REMOTE)
    run = Run(store, remote, options, RunResult("import", entity, options.direction, options.policy))
    answered = []
    with store.engine_writes():
        for sent, result in zip(outgoing, results, strict=True):
            status = result["status"]
            if status == "rejected":
                refused.append((sent, result.get("reason") or "rejected by the server"))
                continue
            answered.append({**(result.get("record") or sent), "version": result["version"]})
            counts["conflict" if status == "conflict" else "unchanged" if status == "unchanged" else "created"] += 1
        reconcile_all(run, answered, Policy.REMOTE)
        for data, reason in refused:
            store.upsert(entity, [data])
            store.reject_new(entity, data["id"], reason)
            counts["rejected"] += 1
    return counts
