"""The local store's ``sync_runs`` table: the log of every run, for the status and history.

Part of the local store (``LocalStore.runs``): its statements run through the store's
connection and error boundary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from craftsync.contract.records import now_iso

if TYPE_CHECKING:
    from craftsync.worker.store import LocalStore


class RunLog:
    """The runs logged in one local store."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store

    def begin(self, *, run_id: str, entity: str, direction: str, policy: str, status: str, started_at: str) -> None:
        """Log a run as started; a run of the entity still marked running was interrupted."""
        self.store.execute(
            "UPDATE sync_runs SET status = 'interrupted', finished_at = ? WHERE entity = ? AND status = 'running'",
            (now_iso(), entity),
        )
        self.store.execute(  # a message redelivered after a crash runs again under its run id
            "INSERT INTO sync_runs (run_id, entity, direction, policy, status, started_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, started_at = excluded.started_at",
            (run_id, entity, direction, policy, status, started_at),
        )

    def finish(
        self, run_id: str, *, status: str, finished_at: str | None, pushed: int, pulled: int, conflicts: int,
        rejected: int, error: str | None,
    ) -> None:
        self.store.execute(
            "UPDATE sync_runs SET status = ?, finished_at = ?, pushed = ?, pulled = ?, conflicts = ?, rejected = ?, "
            "error = ? WHERE run_id = ?",
            (status, finished_at, pushed, pulled, conflicts, rejected, error, run_id),
        )

    def running(self) -> list[dict[str, Any]]:
        """The runs marked running now, oldest first."""
        rows = self.store.execute("SELECT * FROM sync_runs WHERE status = 'running' ORDER BY started_at")
        return [dict(row) for row in rows]

    def end_interrupted(self, run_id: str, error: str) -> None:
        """End a run whose worker died under it as failed with ``error`` (if it is still marked running)."""
        self.store.execute(
            "UPDATE sync_runs SET status = 'failed', finished_at = ?, error = ? "
            "WHERE run_id = ? AND status = 'running'",
            (now_iso(), error, run_id),
        )

    def last(self, entity: str) -> dict[str, Any] | None:
        """The latest run of ``entity``, as logged."""
        row = self.store.execute_one(
            "SELECT * FROM sync_runs WHERE entity = ? ORDER BY started_at DESC LIMIT 1", (entity,)
        )
        return dict(row) if row else None

    def last_finished(self) -> dict[str, Any] | None:
        """The run that ended last, of any entity: its entity, status and finish time."""
        row = self.store.execute_one(
            "SELECT entity, status, finished_at FROM sync_runs WHERE finished_at IS NOT NULL "
            "ORDER BY finished_at DESC LIMIT 1"
        )
        return dict(row) if row else None

    def history(self, limit: int) -> list[dict[str, Any]]:
        """The latest ``limit`` runs, newest first."""
        rows = self.store.execute("SELECT * FROM sync_runs ORDER BY started_at DESC LIMIT ?", (limit,))
        return [dict(row) for row in rows]

    def totals(self) -> dict[str, int]:
        """Runs by outcome, and records pushed and pulled, over the whole log."""
        row = self.store.execute_one(
            "SELECT count(*) AS runs, coalesce(sum(status = 'completed'), 0) AS completed, "
            "coalesce(sum(status = 'failed'), 0) AS failed, coalesce(sum(status = 'conflicts'), 0) AS conflicts, "
            "coalesce(sum(pushed), 0) AS pushed, coalesce(sum(pulled), 0) AS pulled FROM sync_runs"
        )
        return dict(row) if row else {}
