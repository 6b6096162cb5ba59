"""The sync engine: push, pull and both for one entity, with the guarantees of spec §6.

A run logs itself in ``sync_runs``, pulls (``worker.pull``), pushes (``worker.push``), keeps
a block of offline quote/order numbers, and logs how it ended. Records changed on both sides
are merged in ``worker.reconcile``. A failure ends the run as ``failed`` with the reason the
user reads; it never leaves as an exception. The local file is checked before the run
writes anything (``LocalStore.ready``); a run the file refuses from the start (damaged,
read-only, locked, full) is not logged in it, only said in its events; a run that fails
part-way is logged as failed when the file still takes the write.

Each run sends its progress events to the sink given for it (``sync(progress=...)``), by
default the one the engine was made with.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Final

from craftsync.contract.records import ENTITIES, NUMBER_FIELDS, now_iso
from craftsync.contract.vocabulary import Direction, EventType, values
from craftsync.worker.errors import DatabaseDamaged, DatabaseLocked, DatabaseReadOnly, LocalStoreError, SyncError
from craftsync.worker.pull import pull
from craftsync.worker.push import import_records
from craftsync.worker.push import push as push_changes
from craftsync.worker.remote import RemoteClient
from craftsync.worker.run import ProgressSink, Run, RunResult, SyncOptions, no_progress
from craftsync.worker.store import LocalStore

__all__ = ["DIRECTIONS", "Direction", "ProgressSink", "RunResult", "SyncEngine", "SyncOptions"]

log = logging.getLogger(__name__)

#: The directions a run may take, as spelled on the wire.
DIRECTIONS: Final = values(Direction)
#: Keep at least this many offline quote/order numbers; fetch a block of BLOCK_SIZE when lower.
NUMBERS_LOW_WATER: Final = 20
NUMBER_BLOCK_SIZE: Final = 100


class SyncEngine:
    """Runs syncs of the local store against one remote API."""

    def __init__(self, store: LocalStore, remote: RemoteClient, *, progress: ProgressSink | None = None) -> None:
        self.store = store
        self.remote = remote
        #: Where a run's events go when ``sync`` is not given a sink of its own.
        self.progress = progress or no_progress

    def sync(
        self, entity: str, options: SyncOptions = SyncOptions(), *, run_id: str | None = None,
        progress: ProgressSink | None = None,
    ) -> RunResult:
        """One run of ``entity``; failures end in a ``failed`` result, never an exception."""
        if entity not in ENTITIES:
            raise ValueError(f"unknown entity {entity!r}")
        result = RunResult(run_id or uuid.uuid4().hex, entity, options.direction, options.policy)
        run = Run(self.store, self.remote, options, result, progress or self.progress)
        try:
            self.store.ready()
            self._begin(run)
        except LocalStoreError as exc:  # the file refuses the run before it starts: nothing to log
            log.warning("%s %s refused by the local database: %s", entity, options.direction, exc)
            run.emit(EventType.STARTED)
            result.status, result.error, result.finished_at = "failed", exc.plain, now_iso()
            run.emit(EventType.FAILED)
            return result
        failure: SyncError | None = None
        try:
            if options.direction in (Direction.PULL, Direction.BOTH):
                pull(run)
            if options.direction in (Direction.PUSH, Direction.BOTH):
                push_changes(run)
            if entity in NUMBER_FIELDS:
                self._refill_numbers(entity)
            result.status = "conflicts" if self.store.conflicts.open_count(entity) else "completed"
        except SyncError as exc:
            # The run's error is what the user reads (the window, --wait); the detail goes to the log.
            log.warning("%s %s failed: %s", entity, options.direction, exc)
            result.status, result.error, failure = "failed", exc.plain, exc
        finally:
            result.finished_at = now_iso()
            self._finish(run, failure)
        return result

    def import_records(self, entity: str, records: list[dict[str, Any]]) -> dict[str, int]:
        """Push one chunk of a bulk import and store it locally (``worker.push.import_records``)."""
        return import_records(self.store, self.remote, entity, records)

    def _refill_numbers(self, entity: str) -> None:
        """Keep a block of quote/order numbers so that records made offline get unique ones."""
        if self.store.numbers_left(entity) >= NUMBERS_LOW_WATER:
            return
        block = self.remote.number_block(entity, self.store.device_id, NUMBER_BLOCK_SIZE)
        self.store.add_number_block(entity, int(block["first"]), int(block["last"]))

    def _begin(self, run: Run) -> None:
        r = run.result
        self.store.runs.begin(run_id=r.run_id, entity=r.entity, direction=r.direction, policy=r.policy,
                              status=r.status, started_at=r.started_at)
        run.emit(EventType.STARTED)

    def _finish(self, run: Run, failure: SyncError | None) -> None:
        """Log how the run ended, then say so. The file that refused the run is not written
        again (damaged, read-only) nor waited for again (locked); the run's row then stays
        "running" until the next run of the entity marks it."""
        r = run.result
        if not isinstance(failure, _UNLOGGED):
            try:
                self.store.runs.finish(r.run_id, status=r.status, finished_at=r.finished_at, pushed=r.pushed,
                                       pulled=r.pulled, conflicts=r.conflicts, rejected=r.rejected, error=r.error)
            except LocalStoreError as exc:  # a full disk may refuse the log too: the events still say it
                log.warning("%s run %s could not be logged: %s", r.entity, r.run_id, exc)
                if r.status != "failed":
                    r.status, r.error = "failed", exc.plain
        run.emit(EventType.FAILED if r.status == "failed" else EventType.COMPLETED)


#: Failures after which the run's end is not written to the local file.
_UNLOGGED: Final = (DatabaseDamaged, DatabaseReadOnly, DatabaseLocked)
