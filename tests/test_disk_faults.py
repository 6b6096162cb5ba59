"""The desktop's own disk fails a sync: a full disk during a pull and during a push, a
read-only database file, a file another program keeps locked, a damaged file (issue 10).

Each case runs real ``craftsync worker`` processes on a Redis server of the test's own and
asks as a user does: ``craftsync sync customers --wait --json`` and ``craftsync status``;
the window's side is the UI server of a session (``GET /api/status``, which the page shows).
Each must end with one plain sentence saying what happened and what to do, leave the file
sound (``PRAGMA integrity_check``, read raw with the sqlite3 module) and, once the cause is
gone, the next sync must complete with every record on both sides.

The faults are real: a small tmpfs for the database folder (filled, then enlarged), a
read-only bind mount of the file itself (root ignores file modes), another connection
holding ``BEGIN EXCLUSIVE`` past the busy timeout, and a page overwritten in the middle of a
synced file. Mounting needs root and a kernel that lets us: the cases that mount skip
where it is not permitted, and fail under ``CI=true`` when running as root.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import service_missing
from flask import Flask

from tests.support.device import Device, assert_identical
from tests.support.sync import remote_for
from tests.support.ui import Ui, json_of, make_ui
from tests.support.worker import Central, RedisDB, customers_for_server

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(240)]

#: How long a run waits for a locked file before it gives up (worker/store.py BUSY_TIMEOUT_MS).
BUSY_TIMEOUT_S = 30
PAGE = 4096


def full_sentence(path: Path) -> str:
    return f"The disk holding the database file {path} is full: free some space on it, then sync again (nothing was lost)."


def read_only_sentence(path: Path) -> str:
    return f"The database file {path} is read-only: make it (and its folder) writable, then sync again (nothing was lost)."


def locked_sentence(path: Path) -> str:
    return (f"The database file {path} is locked by another program (for over {BUSY_TIMEOUT_S} seconds): "
            "let that program finish or close it, then sync again (nothing was lost).")


def damaged_sentence(path: Path) -> str:
    return (f"The database file {path} is damaged; CraftSync has not changed it. Restore it from a backup, "
            "or have the program that made it repair it, then sync again.")


# -- mounts ----------------------------------------------------------------------------------


class Mounts:
    """Mounts made for one test, each undone (lazily, so that open files do not hold it) at its end."""

    def __init__(self) -> None:
        self.made: list[Path] = []

    def run(self, *args: str) -> None:
        subprocess.run(["mount", *args], check=True, capture_output=True, text=True, timeout=30)

    def tmpfs(self, folder: Path, size: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.run("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
        self.made.append(folder)
        return folder

    def resize(self, folder: Path, size: str) -> None:
        self.run("-o", f"remount,size={size}", str(folder))

    def read_only(self, path: Path) -> None:
        """Bind the file onto itself, read-only: its folder stays writable (SQLite's -wal, -shm)."""
        self.run("--bind", str(path), str(path))
        self.made.append(path)
        self.run("-o", "remount,ro,bind", str(path))

    def writable(self, path: Path) -> None:
        self.run("-o", "remount,rw,bind", str(path))

    def undo(self) -> None:
        for target in reversed(self.made):
            subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30, check=False)


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[Mounts]:
    """Mounting for the test, where this machine permits it (it needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs or a read-only bind needs root")
    made = Mounts()
    try:
        made.tmpfs(tmp_path / "mount-probe", "64k")
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        service_missing(f"this machine does not let root mount a tmpfs ({' '.join(str(detail).split())})")
    try:
        yield made
    finally:
        made.undo()


# -- the device ------------------------------------------------------------------------------


@pytest.fixture
def device(tmp_path: Path, private_redis: RedisDB, central: Central) -> Iterator[Device]:
    """A desktop with workers on a Redis server of its own (``--wait`` follows its whole channel)."""
    one = Device.with_workers(tmp_path, central, private_redis)
    yield one
    one.close()


def close_host(device: Device) -> None:
    """The host app closes the file (the last connection's close checkpoints the WAL)."""
    device.host.close()


def open_host(device: Device, path: Path | None = None) -> None:
    """The host app opens the file (again), at ``path`` if it moved."""
    device.path = path or device.path
    device.host = sqlite3.connect(device.path, isolation_level=None, timeout=30)
    device.host.row_factory = sqlite3.Row


def move_to(device: Device, folder: Path) -> Path:
    """Move the device's closed file into ``folder``; the host app reopens it there."""
    close_host(device)
    target = folder / device.path.name
    shutil.move(device.path, target)
    open_host(device, target)
    return target


def sync_wait(device: Device, *, timeout: float = 120) -> dict[str, Any]:
    """``craftsync sync customers --wait --json``: its one run, checked to be the only output."""
    result = device.cli("sync", "customers", "--wait", "--json", timeout=timeout)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, (result.stdout, result.stderr)
    summary = json.loads(lines[0])
    assert result.returncode == {"completed": 0, "failed": 1}[summary["status"]], result
    (run,) = summary["runs"]
    return dict(run)


def status_lines(device: Device) -> dict[str, str]:
    """``craftsync status``: its lines by their first word (it must succeed)."""
    result = device.cli("status")
    assert (result.returncode, result.stderr) == (0, ""), result
    return {line.split(":")[0].split()[0]: line for line in result.stdout.splitlines()}


def integrity(path: Path) -> list[str]:
    """``PRAGMA integrity_check`` on the file, read raw and read-only."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def fill(folder: Path, *, leave: int) -> Path:
    """Fill the disk holding ``folder`` with one file until at most ``leave`` bytes are free."""
    filler = folder / "filler"
    with open(filler, "wb") as out:
        chunk = b"\0" * PAGE
        try:
            while shutil.disk_usage(folder).free > leave:
                out.write(chunk)
                out.flush()
        except OSError:
            pass  # already full
    return filler


# -- a full disk ---------------------------------------------------------------------------


def test_a_full_disk_stops_a_pull_with_one_sentence_and_the_next_sync_after_space_is_freed_completes(
    device: Device, mounts: Mounts, tmp_path: Path
) -> None:
    # Given 20,000 customers on the server and a database folder on a disk of 3 MB
    device.central.push("customers", customers_for_server(20_000))
    path = move_to(device, mounts.tmpfs(tmp_path / "small-disk", "3m"))
    device.start_worker()
    # When the device pulls them
    run = sync_wait(device)
    # Then the run fails with one sentence saying the disk is full and what to do
    assert (run["type"], run["error"]) == ("failed", full_sentence(path)), run
    # And the status says the same of the last run
    assert status_lines(device)["customers"].endswith(": " + full_sentence(path))
    # And the file is sound, holding the whole pages pulled before the disk filled
    assert integrity(path) == ["ok"]
    pulled = len(device.rows("customers"))
    assert 0 < pulled < 20_000 and pulled % 5000 == 0, f"{pulled} customers pulled (pages of 5,000)"
    # When the disk grows and the device syncs again
    mounts.resize(path.parent, "64m")
    again = sync_wait(device)
    # Then the sync completes and both sides hold every record
    assert (again["type"], again["error"]) == ("completed", None), again
    assert_identical(device, "customers", count=20_000)
    assert integrity(path) == ["ok"]


def test_a_full_disk_stops_a_push_with_one_sentence_and_nothing_is_lost_or_sent_twice(
    device: Device, mounts: Mounts, tmp_path: Path
) -> None:
    # Given 3,000 customers the host app added, on a disk then filled to its last 64 KB
    path = move_to(device, mounts.tmpfs(tmp_path / "small-disk", "8m"))
    device.insert_customers(3000)
    filler = fill(path.parent, leave=64 * 1024)
    device.start_worker()
    # When the device pushes them
    run = sync_wait(device)
    # Then the run fails with one sentence saying the disk is full
    assert (run["type"], run["error"]) == ("failed", full_sentence(path)), run
    # (it failed while writing the server's answers: the server holds the first batch)
    assert len(device.central.stored("customers")) == 2000
    # And the file is sound and the host app's records are all there, still to push
    assert integrity(path) == ["ok"]
    assert len(device.live("customers")) == 3000
    assert device.pending() == 3000
    # When space is freed and the device syncs again
    filler.unlink()
    again = sync_wait(device)
    # Then the sync completes, both sides hold the 3,000 records, each created once
    assert (again["type"], again["error"]) == ("completed", None), again
    assert_identical(device, "customers", count=3000)
    versions, _feed, _counter = device.central.bookkeeping("customers")
    assert set(versions.values()) == {1}, "a record was written twice on the server"


# -- a read-only file ----------------------------------------------------------------------


def test_a_read_only_database_file_is_said_and_the_sync_after_it_is_writable_again_completes(
    device: Device, mounts: Mounts
) -> None:
    # Given five synced customers, then three more and an edit the host app made
    device.insert_customers(5)
    assert device.cli("sync", "customers", "--inline").returncode == 0
    device.insert_customers(3, prefix="Later")
    device.sql("UPDATE customers SET city = 'York' WHERE name = 'Customer 0'")
    before = device.rows("customers")
    # And the file made read-only (its drive remounted read-only, say)
    close_host(device)
    mounts.read_only(device.path)
    device.start_worker()
    # When the device syncs
    run = sync_wait(device)
    # Then the run fails with one sentence saying the file is read-only and what to do
    assert (run["type"], run["error"]) == ("failed", read_only_sentence(device.path)), run
    # And the status says so too
    assert status_lines(device)["database"] == f"database:  {read_only_sentence(device.path)}"
    # And the file is sound
    assert integrity(device.path) == ["ok"]
    # When the file is writable again and the device syncs (the same worker)
    mounts.writable(device.path)
    again = sync_wait(device)
    # Then the sync completes with every record and the edit on both sides
    assert (again["type"], again["error"]) == ("completed", None), again
    open_host(device)
    assert device.rows("customers").keys() == before.keys()
    assert_identical(device, "customers", count=8)
    assert "database" not in status_lines(device)


# -- a file locked by another program ------------------------------------------------------


def test_a_file_locked_by_another_program_fails_the_run_after_the_busy_timeout_and_the_next_sync_completes(
    device: Device,
) -> None:
    # Given two customers the host app added, and the host app then holding the file
    # locked in a long transaction of its own (one more customer in it)
    device.insert_customers(2)
    device.start_worker()
    device.sql("BEGIN EXCLUSIVE")
    device.sql("INSERT INTO customers (name) VALUES ('Held')")
    # When the device syncs
    started = time.monotonic()
    run = sync_wait(device)
    waited = time.monotonic() - started
    # Then the run fails after its busy timeout (not hanging) with one sentence saying why
    assert (run["type"], run["error"]) == ("failed", locked_sentence(device.path)), run
    assert BUSY_TIMEOUT_S - 1 < waited < BUSY_TIMEOUT_S + 25, waited
    # And the status says the file is locked right now
    assert re.fullmatch(rf"database: +The database file {re.escape(str(device.path))} is locked by another program "
                        rf"right now: a sync waits up to {BUSY_TIMEOUT_S} seconds for it, then stops\.",
                        status_lines(device)["database"])
    # When the host app commits and the device syncs again
    device.sql("COMMIT")
    again = sync_wait(device)
    # Then the sync completes with all three customers on both sides, the file sound
    assert (again["type"], again["error"]) == ("completed", None), again
    assert_identical(device, "customers", count=3)
    assert integrity(device.path) == ["ok"]


# -- a damaged file ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["a page in the middle", "the header"])
def test_a_damaged_database_file_is_refused_unchanged_and_the_sync_after_a_restore_completes(
    device: Device, tmp_path: Path, where: str
) -> None:
    # Given 3,000 synced customers, a backup of the file, and then a page in the middle of
    # the file overwritten (a disk fault), or its header (a half-copied file)
    device.insert_customers(3000)
    assert device.cli("sync", "customers", "--inline").returncode == 0
    backup = tmp_path / "backup.db"
    source, copy = sqlite3.connect(device.path), sqlite3.connect(backup)
    source.backup(copy)
    source.close(), copy.close()
    close_host(device)
    pages = device.path.stat().st_size // PAGE
    with open(device.path, "r+b") as file:
        if where == "the header":
            file.write(b"\xa5" * 100)
        else:
            file.seek(pages // 2 * PAGE)
            file.write(b"\xa5" * PAGE)
    with pytest.raises(sqlite3.DatabaseError):
        assert integrity(device.path) == ["ok"]  # SQLite itself finds the damage
    damaged = hashlib.sha256(device.path.read_bytes()).hexdigest()
    device.start_worker()
    # When the device syncs
    run = sync_wait(device)
    # Then the run is refused with one sentence saying the file is damaged and what to do
    assert (run["type"], run["error"]) == ("failed", damaged_sentence(device.path)), run
    # And the status refuses with the same one line
    status = device.cli("status")
    assert (status.returncode, status.stdout, status.stderr) == (1, "", f"craftsync: {damaged_sentence(device.path)}\n")
    # And not a byte of the file was changed, nor anything written beside it
    assert hashlib.sha256(device.path.read_bytes()).hexdigest() == damaged
    wal = device.path.with_name(device.path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "something was written to the damaged file's WAL"
    # When the user restores the backup and the device syncs again (the same worker)
    shutil.copyfile(backup, device.path)
    again = sync_wait(device)
    # Then the sync completes and both sides hold the 3,000 customers
    assert (again["type"], again["error"]) == ("completed", None), again
    open_host(device)
    assert_identical(device, "customers", count=3000)
    assert integrity(device.path) == ["ok"]


# -- in the window -------------------------------------------------------------------------


def test_the_window_shows_why_a_pull_stopped_on_a_full_disk_and_the_next_sync_completes(
    tmp_path: Path, mounts: Mounts, redis_db: RedisDB, reference_app: Flask, reference_url: str
) -> None:
    # Given a session whose database folder is on a disk of 3 MB, and 20,000 customers on the server
    ui = make_ui(mounts.tmpfs(tmp_path / "small-disk", "3m"), redis_db.url, reference_url)
    device = Device.in_process(ui.database, reference_app)  # a worker's engine on the session's file
    try:
        with remote_for(reference_app) as other:
            for _batch in range(4):
                other.push("customers", customers_for_server(5000))
        # When the device pulls them
        run = device.sync("customers", "pull")
        assert (run.status, run.error) == ("failed", full_sentence(ui.database))
        # Then the window's status says the sync failed and why, in one sentence
        status = json_of(ui.logged_in().get("/api/status"))
        assert status["state"] == "error", status
        assert status["entities"]["customers"]["last_run"]["error"] == full_sentence(ui.database)
        assert integrity(ui.database) == ["ok"]
        # When the disk grows, Then the next sync completes with every record
        mounts.resize(ui.database.parent, "64m")
        assert device.sync("customers", "pull").status == "completed"
        assert len(device.live("customers")) == 20_000
    finally:
        device.close()
        ui.close()


def test_the_window_says_a_damaged_database_file_is_damaged_and_leaves_it_unchanged(
    ui: Ui
) -> None:
    # Given the session's file with its first page overwritten (a half-copied file)
    with open(ui.database, "r+b") as file:
        file.write(b"\xa5" * 100)
    damaged = hashlib.sha256(ui.database.read_bytes()).hexdigest()
    # When the window asks for the status
    answer = ui.logged_in().get("/api/status")
    # Then it answers with the one sentence the page shows, saying what to do
    assert answer.status_code == 503
    assert json_of(answer) == {"error": "local_database", "message": damaged_sentence(ui.database)}
    # And not a byte of the file was changed
    assert hashlib.sha256(ui.database.read_bytes()).hexdigest() == damaged
