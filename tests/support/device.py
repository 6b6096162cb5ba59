"""One desktop for the tests: its SQLite file as the host app reads and writes it, and one of
two ways to sync it.

- ``Device.in_process(path, app)``: ``sync`` and ``sync_all`` run a ``SyncEngine`` on the file
  here, against a reference server app in-process (``httpx.WSGITransport``); ``store``,
  ``engine`` and ``events`` (every progress event of its runs) are the engine's.
- ``Device.with_workers(tmp, central, redis)``: ``start_worker`` runs ``craftsync worker``
  processes on a Redis database of the test's own against a ``craftsync server``, and ``cli``
  runs ``craftsync`` commands as a user would; ``central``, ``redis``, ``tmp``, ``home`` and
  ``workers`` are theirs.

The host app's side is the same for both: plain SQL, autocommit, on a connection of its own
(``host``). Its reads are raw: the rows as SQLite stores them, nothing passed through the
product's own normalising, so that "identical" means the same stored values, field by field.
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from craftsync.contract.records import data_fields
from craftsync.worker.engine import RunResult, SyncEngine, SyncOptions
from craftsync.worker.store import LocalStore
from tests.support.process import CRAFTSYNC, RedisDB, Service, clean_env, wait_until
from tests.support.sync import remote_for
from tests.support.worker import Central, heartbeats, start_worker

#: The order ``sync_all`` syncs in: parents before the records that refer to them.
ENTITIES = ("customers", "quotes", "orders")


class Device:
    """One desktop: its SQLite file, the host app's connection to it, and a way to sync it
    (made by ``Device.in_process`` or ``Device.with_workers``)."""

    # in process (Device.in_process)
    store: LocalStore
    engine: SyncEngine
    events: list[dict[str, Any]]
    # through workers (Device.with_workers)
    tmp: Path
    home: Path
    central: Central
    redis: RedisDB
    workers: list[Service]

    def __init__(self, path: Path) -> None:
        """The host app's side of the file at ``path``, which already holds the schema."""
        self.path = path
        self.host = sqlite3.connect(path, isolation_level=None, timeout=30)  # the host app's own connection
        self.host.row_factory = sqlite3.Row
        self._closing: list[Callable[[], None]] = []  # what the way of syncing must close

    @classmethod
    def in_process(cls, path: Path, app: Flask) -> Device:
        """A device whose syncs run here, by a ``SyncEngine`` talking to ``app`` in-process."""
        store = LocalStore(path)
        device = cls(path)
        device.store, device.events = store, []
        device.engine = SyncEngine(store, remote_for(app), progress=device.events.append)
        device._closing += [store.close, lambda: device.engine.remote.close()]  # the remote a test may swap in
        return device

    @classmethod
    def with_workers(cls, tmp: Path, central: Central, redis: RedisDB) -> Device:
        """A device in ``tmp`` whose syncs run in ``craftsync worker`` processes on ``redis``,
        against ``central``."""
        path = tmp / "local.db"
        LocalStore(path).close()  # the schema, as any craftsync command creates it
        device = cls(path)
        device.tmp, device.central, device.redis, device.workers = tmp, central, redis, []
        device.home = tmp / "device-home"
        device.home.mkdir(exist_ok=True)
        device._closing.append(device._kill_workers)
        return device

    # -- the host app ----------------------------------------------------------------------

    def sql(self, statement: str, *args: Any) -> list[sqlite3.Row]:
        """Run SQL as the host app does: plain statements, autocommit."""
        return self.host.execute(statement, args).fetchall()

    def insert_customers(self, count: int, *, prefix: str = "Customer") -> None:
        """``count`` customers in one transaction, with ids the table's default makes."""
        self.host.execute("BEGIN")
        self.host.executemany(
            "INSERT INTO customers (name, email, city, notes) VALUES (?, ?, ?, ?)",
            ((f"{prefix} {i}", f"c{i}@example.com", "Leeds", f"note {i}") for i in range(count)),
        )
        self.host.execute("COMMIT")

    def live(self, entity: str) -> dict[str, dict[str, Any]]:
        """Live records (not soft-deleted) exactly as stored, keyed by id."""
        return self._records(entity, "WHERE deleted_at IS NULL")

    def rows(self, entity: str) -> dict[str, dict[str, Any]]:
        """Every record, soft-deleted ones too, exactly as stored, keyed by id."""
        return self._records(entity, "")

    def not_synced(self) -> list[tuple[str, str, int]]:
        """(entity, status, count) of every sync_metadata row that is not 'synced'."""
        return [tuple(r) for r in self.sql(  # type: ignore[misc]
            "SELECT entity, sync_status, count(*) FROM sync_metadata WHERE sync_status != 'synced' "
            "GROUP BY entity, sync_status")]

    def pending(self) -> int:
        """Records whose local state is not agreed with the server (pending, conflict, rejected)."""
        return sum(count for _entity, _status, count in self.not_synced())

    def known_versions(self, entity: str) -> dict[str, int | None]:
        """The server version this device last saw of each record (``remote_version``), by id."""
        return {row[0]: row[1] for row in self.sql(
            "SELECT record_id, remote_version FROM sync_metadata WHERE entity = ?", entity)}

    def runs(self) -> list[sqlite3.Row]:
        """Every row of ``sync_runs``, oldest first."""
        return self.sql("SELECT * FROM sync_runs ORDER BY started_at")

    def run(self, run_id: str) -> dict[str, Any] | None:
        """The run's row in ``sync_runs`` as stored, or None when it never started."""
        rows = self.sql("SELECT * FROM sync_runs WHERE run_id = ?", run_id)
        return dict(rows[0]) if rows else None

    def _records(self, entity: str, where: str) -> dict[str, dict[str, Any]]:
        cursor = self.host.execute(f"SELECT {', '.join(data_fields(entity))} FROM {entity} {where}")
        names = [column[0] for column in cursor.description]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}

    # -- syncing in process ----------------------------------------------------------------

    def sync(self, entity: str, direction: str = "both", policy: str = "remote") -> RunResult:
        return self.engine.sync(entity, SyncOptions(direction=direction, policy=policy))  # type: ignore[arg-type]

    def sync_all(self, direction: str = "both", policy: str = "remote") -> list[RunResult]:
        return [self.sync(entity, direction, policy) for entity in ENTITIES]

    # -- syncing through workers -----------------------------------------------------------

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of this device's processes; an override of "" leaves a variable out."""
        variables = {"REDIS_URL": self.redis.url, "CRAFTSYNC_DB": str(self.path),
                     "REMOTE_API_URL": self.central.url, "REMOTE_API_KEY": self.central.key, **overrides}
        return clean_env(self.home, **{k: v for k, v in variables.items() if v})

    def start_worker(self, *, processes: int = 1, threads: int = 2, ready_timeout: float = 30,
                     **overrides: str) -> Service:
        """Start ``craftsync worker`` and wait until it consumes from the queue."""
        before = heartbeats(self.redis.client)
        worker = start_worker(self.env(**overrides), log=self.tmp / f"worker-{len(self.workers)}.log",
                              cwd=self.home, processes=processes, threads=threads)
        self.workers.append(worker)

        def consuming() -> bool:
            if not worker.alive():
                pytest.fail(f"the worker exited with {worker.proc.returncode}:\n{worker.tail()}")
            return bool(heartbeats(self.redis.client) - before)

        wait_until(consuming, timeout=ready_timeout, interval=0.1, what="the worker to consume")
        return worker

    def cli(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
        """Run ``craftsync ARGS`` as a user would, in this device's environment."""
        return subprocess.run([*CRAFTSYNC, *args], env=env if env is not None else self.env(), cwd=self.home,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)

    def _kill_workers(self) -> None:
        for worker in self.workers:
            worker.kill()  # nothing to save: a graceful stop would only cost time

    def close(self) -> None:
        for close in self._closing:
            close()
        self.host.close()


def assert_identical(device: Device, entity: str, *, count: int | None = None) -> None:
    """The device and its central server hold the same live records, ``count`` of them, each
    tracked once in ``sync_metadata``, nothing pending: the same stored values, field by field,
    read raw from each database."""
    local, remote = device.live(entity), device.central.stored(entity)
    tracked, every = device.known_versions(entity), device.rows(entity)
    assert tracked.keys() == every.keys(), f"sync_metadata tracks {len(tracked)} records, the table holds {len(every)}"
    if count is not None:
        assert (len(local), len(remote)) == (count, count), f"(local, server) live records: {(len(local), len(remote))}"
    assert local.keys() == remote.keys(), (
        f"{len(local.keys() - remote.keys())} only local, {len(remote.keys() - local.keys())} only on the server")
    different = [i for i in local if local[i] != remote[i]]
    assert not different, f"{len(different)} records differ, e.g. {local[different[0]]} != {remote[different[0]]}"
    assert device.not_synced() == [], f"left unsynced: {device.not_synced()}"
