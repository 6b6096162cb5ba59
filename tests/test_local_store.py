"""The local store owns the local file: its SQL, its errors, its migration; the engine merges
each record once per page and sends each run's progress where that run says.
"""

from __future__ import annotations

import ast
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from craftsync.contract.vocabulary import Direction, Policy
from craftsync.worker import merge as merge_module
from craftsync.worker import reconcile
from craftsync.worker.broker import broker_errors, ping
from craftsync.worker.engine import SyncOptions
from craftsync.worker.errors import BrokerUnavailable, LocalStoreError
from craftsync.worker.store import LocalStore, migrate
from tests.support.device import Device

ROOT = Path(__file__).resolve().parent.parent
#: The modules that may run SQL on the local file: the store's own.
STORE_MODULES = {"store.py", "store_conflicts.py", "store_runs.py", "store_records.py"}


def _shared_customers(a: Device, b: Device, n: int) -> list[str]:
    for i in range(n):
        a.sql("INSERT INTO customers (name) VALUES (?)", f"c{i}")
    a.sync("customers")
    b.sync("customers")
    return sorted(b.live("customers"))


def test_no_module_outside_the_store_runs_sql_on_the_local_file() -> None:
    # Given every Python module of the worker and the shell (migrations aside: Alembic's DDL)
    offenders = []
    for folder in ("worker", "shell"):
        for path in sorted((ROOT / folder).glob("*.py")):
            if path.name in STORE_MODULES:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            # Then none calls execute/executemany/executescript on anything but a Redis pipeline
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("execute", "executemany", "executescript")
                        and not (isinstance(node.func.value, ast.Name) and node.func.value.id == "pipe")):
                    offenders.append(f"{folder}/{path.name}:{node.lineno}")
    assert offenders == []


def test_each_record_is_merged_once_per_page(devices: tuple[Device, Device], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given three customers changed on both sides, two of them in the same field
    a, b = devices
    ids = _shared_customers(a, b, 3)
    for record_id in ids:
        a.sql("UPDATE customers SET name = 'from a', phone = '1' WHERE id = ?", record_id)
        b.sql("UPDATE customers SET name = ?, city = 'Oslo' WHERE id = ?", "from b" if record_id != ids[0] else "from a",
              record_id)
    a.sync("customers")
    merged: list[str] = []
    real = merge_module.merge

    def counting(base: Any, local: dict[str, Any], remote: dict[str, Any], *args: Any) -> Any:
        merged.append(remote["id"])
        return real(base, local, remote, *args)

    monkeypatch.setattr(reconcile, "merge", counting)
    # When B pulls under the manual policy, and then pulls again after A changed them once more
    pull_manually = SyncOptions(direction=Direction.PULL, policy=Policy.MANUAL)
    result = b.engine.sync("customers", pull_manually)
    assert result.conflicts == 2
    assert sorted(merged) == sorted(ids)
    merged.clear()
    for record_id in ids:
        a.sql("UPDATE customers SET name = 'from a again' WHERE id = ?", record_id)
    a.sync("customers")
    merged.clear()  # A's own run merged its pending records with what it had pushed
    b.engine.sync("customers", pull_manually)
    # Then each record went through the merge exactly once in each pull, in conflict or not
    assert sorted(merged) == sorted(ids)


def test_a_runs_progress_goes_to_the_sink_given_for_that_run(devices: tuple[Device, Device]) -> None:
    # Given an engine made with a default sink
    a, _ = devices
    a.sql("INSERT INTO customers (name) VALUES ('Ann')")
    mine: list[dict[str, Any]] = []
    # When one run is given a sink of its own
    a.engine.sync("customers", progress=mine.append)
    # Then its events went there and not to the default; the next run uses the default again
    assert [e["type"] for e in mine][:1] == ["started"] and mine[-1]["type"] == "completed"
    assert a.events == []
    a.engine.sync("customers")
    assert [e["type"] for e in a.events][-1] == "completed"


def test_a_failing_statement_leaves_the_store_as_local_store_error(tmp_path: Path) -> None:
    # Given a local file whose metadata table the host app has broken
    store = LocalStore(tmp_path / "broken.db")
    store.conn.execute("DROP TABLE sync_metadata")
    # When the store is asked for counts, Then the failure is the worker's own error
    with pytest.raises(LocalStoreError, match="^local database error: no such table: sync_metadata"):
        store.counts("customers")
    store.close()


def test_a_sync_on_a_broken_file_fails_with_the_local_database_error(devices: tuple[Device, Device]) -> None:
    # Given a device whose metadata table is gone
    a, _ = devices
    a.sql("DROP TABLE sync_metadata")
    # When it syncs, Then the run fails (no exception) saying what the database said
    result = a.sync("customers")
    assert result.status == "failed"
    assert result.error == "local database error: no such table: sync_metadata"


def test_the_local_migration_waits_for_a_writer_holding_the_file(tmp_path: Path) -> None:
    # Given a WAL file whose host app holds a write transaction
    path = tmp_path / "busy.db"
    host = sqlite3.connect(path, isolation_level=None, timeout=5, check_same_thread=False)
    host.execute("PRAGMA journal_mode = WAL")  # as every file the store has opened once
    host.execute("CREATE TABLE host_things (x)")
    host.execute("BEGIN IMMEDIATE")
    host.execute("INSERT INTO host_things VALUES (1)")
    threading.Timer(0.3, lambda: host.execute("COMMIT")).start()
    # When the store migrates the file, Then it takes its turn (BEGIN IMMEDIATE, busy timeout)
    migrate(path)
    with LocalStore(path, migrate_schema=False) as store:
        assert store.device_id and store.counts("customers")["pending"] == 0
        assert store.execute("SELECT x FROM host_things")[0][0] == 1
    host.close()


def test_migrating_twice_at_once_keeps_one_schema(tmp_path: Path) -> None:
    # Given a new file, When four threads migrate it at once
    path = tmp_path / "new.db"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrate(path)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then none failed and the device has one id
    assert errors == []
    with LocalStore(path, migrate_schema=False) as store:
        assert len(store.execute("SELECT value FROM sync_state WHERE key = 'device_id'")) == 1


def test_an_unreachable_broker_is_broker_unavailable_without_its_password() -> None:
    # Given a broker address where nothing listens, with a password in it
    url = "redis://:s3cret@127.0.0.1:1/0"
    # When the broker is checked, Then the worker's error names it without the password
    with pytest.raises(BrokerUnavailable) as caught:
        ping(url, timeout_s=1)
    assert "cannot reach the broker at redis://:***@127.0.0.1:1/0" in str(caught.value)
    assert "s3cret" not in str(caught.value) and caught.value.reason


def test_broker_errors_leaves_other_exceptions_alone() -> None:
    with pytest.raises(KeyError), broker_errors():
        raise KeyError("not redis")
