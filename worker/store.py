"""The local store: the host app's SQLite file, its schema, and every SQL statement on it.

The host app, the UI and several workers open the file at once, so every connection runs
in WAL mode with a busy timeout. The engine's writes go through ``LocalStore.engine_writes``:
one ``BEGIN IMMEDIATE`` transaction with change capture switched off inside it (the
triggers check the one-row ``sync_control`` table), so that what the engine writes is never
mistaken for a change made by the host app. Other connections never see capture switched
off: the switch is part of the transaction and is set back before it commits.

``LocalStore`` answers the sync engine, the conflict commands and the shell by named
methods; three tables have a module of their own, reached through the store:

    store.py             the file: connection, migration, transactions, sync state, the host
                         app's rows and their ``sync_metadata``
    store_conflicts.py   ``store.conflicts``: the ``sync_conflicts`` table
    store_runs.py        ``store.runs``: the ``sync_runs`` log
    store_records.py     ``store.records``: the UI's record lists, searches and edits

No other module holds SQL on the local file. ``LocalStore.execute`` (with ``execute_one``
and ``execute_many``) runs every statement, and is the one place where sqlite3 errors
become ``LocalStoreError``: by SQLite's error code, a full disk, a read-only file, a file
locked past the busy timeout, a damaged file and a file that cannot be opened each have
their own error and sentence for the user (``_translated``).

A damaged file is never written: each run first has ``LocalStore.ready`` check the file
once per connection (``PRAGMA quick_check``), and once damage is met the store refuses
every further statement. A connection that met a read-only, damaged or unopenable file is
opened afresh before the next run, so that the run after the cause is gone completes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

from craftsync.contract.records import ENTITIES, data_fields, now_iso
from craftsync.worker.errors import (
    DatabaseDamaged,
    DatabaseLocked,
    DatabaseReadOnly,
    DatabaseUnreachable,
    DiskFull,
    LocalStoreError,
)
from craftsync.worker.settings import create_private, ensure_dir
from craftsync.worker.store_conflicts import ConflictTable
from craftsync.worker.store_records import RecordQueries
from craftsync.worker.store_runs import RunLog

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = threading.Lock()

#: Milliseconds a connection waits for another writer (host app, UI, worker) to finish.
BUSY_TIMEOUT_MS: Final = 30_000
#: Milliseconds ``write_problem`` waits for another writer (a run's transactions are shorter).
PROBE_TIMEOUT_MS: Final = 2_000
#: Pages between WAL checkpoints; 10,000 instead of 1,000 measured 25-40% faster bulk pulls.
WAL_AUTOCHECKPOINT: Final = 10_000
#: Ids per ``IN (...)`` list: SQLite allows 999 parameters in older builds.
IDS_PER_QUERY: Final = 900

Row = sqlite3.Row


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection tuned for sharing the file: WAL, busy timeout, explicit transactions."""
    try:
        conn = _open(path)
    except sqlite3.Error as exc:
        raise _translated(exc, path) from exc
    conn.row_factory = sqlite3.Row
    return conn


def check_intact(conn: sqlite3.Connection, path: str | Path) -> None:
    """Raise ``DatabaseDamaged`` unless SQLite finds the file sound (``PRAGMA quick_check``:
    every page and B-tree; about 0.2 s for a 90 MB file)."""
    try:
        found = conn.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.Error as exc:
        raise _translated(exc, path) from exc
    if found is None or found[0] != "ok":
        raise _damaged(path, "quick_check: " + " ".join(str(found[0] if found else "no answer").split()))


def _open(path: str | Path) -> sqlite3.Connection:
    if str(path) != ":memory:":
        create_private(Path(path))  # 0600: SQLite gives its -wal and -shm files the same mode
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
    return conn


def migrate(path: str | Path) -> None:
    """Create or upgrade the local schema in the file at ``path``, keeping every row.

    The whole upgrade is one ``BEGIN IMMEDIATE`` transaction: several workers opening a
    new file at once take turns, and the later ones find the schema already there. Within
    one process a lock serialises them too: Alembic's ``context`` is a module global.
    """
    ensure_dir(Path(path).absolute().parent)  # a new machine's data dir does not exist yet
    if _at_head(path):
        return  # nothing to write: a read-only or locked file still opens
    with _MIGRATION_LOCK:
        _upgrade(path)


def _at_head(path: str | Path) -> bool:
    """Whether the file's schema is already the newest, read without taking a write lock."""
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    try:
        conn = _open(path)
    except sqlite3.Error as exc:
        raise _translated(exc, path) from exc
    try:
        row = conn.execute("SELECT version_num FROM craftsync_schema_version").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return False  # a new file, or one the host app made: migrate it
        raise _translated(exc, path) from exc
    except sqlite3.Error as exc:
        raise _translated(exc, path) from exc
    finally:
        conn.close()
    return row is not None and row[0] == head


def _upgrade(path: str | Path) -> None:
    engine = _migration_engine(path)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except Exception as exc:
        found = getattr(exc, "orig", None)
        if isinstance(found, sqlite3.Error):  # a full disk, a locked file, ... as anywhere else
            raise _translated(found, path) from exc
        raise LocalStoreError(f"cannot prepare the local database {path}: {_first_line(exc)}") from exc
    finally:
        engine.dispose()


def _migration_engine(path: str | Path) -> Engine:
    """A SQLAlchemy engine for Alembic on our own connections, whose transactions begin
    with ``BEGIN IMMEDIATE`` (the connections are in autocommit mode: we issue BEGIN)."""
    engine = create_engine("sqlite://", creator=lambda: _open(path), poolclass=NullPool)

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class LocalStore:
    """One connection to one local database file, and the statements run on it."""

    def __init__(self, path: str | Path, *, migrate_schema: bool = True) -> None:
        self.path = Path(path)
        if migrate_schema:
            migrate(self.path)
        #: Why nothing more may be run on this connection (a damaged file), if so.
        self._refused: LocalStoreError | None = None
        #: Whether to open the connection afresh before the next run (``ready``).
        self._reopen = False
        #: Whether the file was checked for damage on this connection.
        self._checked = False
        try:
            self.conn = connect(self.path)
        except LocalStoreError as exc:
            if migrate_schema or not exc.reopen:
                raise
            # A worker's or the UI's store on a file that cannot be opened now: every
            # statement says why, and each run tries the file again first (``ready``).
            self.conn = sqlite3.connect(":memory:", check_same_thread=False)
            self._refused, self._reopen = exc, True
        if migrate_schema:  # a command's store: refuse a damaged file at once
            self.ready()
        #: The conflicts kept for the user.
        self.conflicts = ConflictTable(self)
        #: The log of runs.
        self.runs = RunLog(self)
        #: The UI's record lists and edits.
        self.records = RecordQueries(self)

    def close(self) -> None:
        self.conn.close()

    def ready(self) -> None:
        """Before a run: open the connection afresh if it met a read-only, damaged or
        unopenable file (the cause may be gone), and check the file for damage once per
        connection. Raises the ``LocalStoreError`` that says why the run cannot go on."""
        if self._reopen:
            self.conn.close()
            self.conn = connect(self.path)
            self._refused, self._reopen, self._checked = None, False, False
        if self._refused is not None:
            raise self._refused
        if not self._checked:
            try:
                check_intact(self.conn, self.path)
            except LocalStoreError as exc:
                raise self._failed(exc) from exc
            self._checked = True

    def write_problem(self) -> str | None:
        """Why a sync could not write the file now (read-only, locked by another program),
        in one sentence for the user; None when it could. Tried in a transaction that is
        rolled back, waiting a moment at most for other writers: nothing is written."""
        self.conn.execute(f"PRAGMA busy_timeout = {PROBE_TIMEOUT_MS}")
        try:
            self.execute("BEGIN IMMEDIATE")
            self.execute("UPDATE sync_control SET capture_off = capture_off WHERE id = 1")
        except DatabaseLocked:
            return (f"The database file {self.path} is locked by another program right now: a sync waits up to "
                    f"{BUSY_TIMEOUT_MS // 1000} seconds for it, then stops.")
        except LocalStoreError as exc:
            return exc.plain
        finally:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return None

    def _failed(self, exc: sqlite3.Error | LocalStoreError) -> LocalStoreError:
        """The error to raise for ``exc``; a damaged file refuses every later statement."""
        error = exc if isinstance(exc, LocalStoreError) else _translated(exc, self.path)
        if isinstance(error, DatabaseDamaged):
            self._refused = error
        self._reopen = self._reopen or error.reopen
        return error

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the boundary: every statement, and sqlite3's errors as LocalStoreError ------------

    def execute(self, statement: str, args: Sequence[Any] = ()) -> list[Row]:
        """Run one statement; its rows (none for most writes)."""
        if self._refused is not None:
            raise self._refused
        try:
            return self.conn.execute(statement, args).fetchall()
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc

    def execute_one(self, statement: str, args: Sequence[Any] = ()) -> Row | None:
        """Run one statement; its first row, or None."""
        if self._refused is not None:
            raise self._refused
        try:
            return self.conn.execute(statement, args).fetchone()
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc

    def execute_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per row of arguments."""
        if not rows:
            return
        if self._refused is not None:
            raise self._refused
        try:
            self.conn.executemany(statement, rows)
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc

    @contextmanager
    def engine_writes(self) -> Iterator[sqlite3.Connection]:
        """One write transaction whose changes the capture triggers ignore."""
        self.execute("BEGIN IMMEDIATE")
        try:
            self.execute("UPDATE sync_control SET capture_off = 1 WHERE id = 1")
            yield self.conn
            self.execute("UPDATE sync_control SET capture_off = 0 WHERE id = 1")
            self.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:  # SQLite may have rolled back already (a full disk)
                self.conn.execute("ROLLBACK")
            raise

    # -- state ------------------------------------------------------------------------------

    def state(self, key: str) -> str | None:
        row = self.execute_one("SELECT value FROM sync_state WHERE key = ?", (key,))
        return row[0] if row else None

    @property
    def device_id(self) -> str:
        value = self.state("device_id")
        assert value is not None, "migration 0001 sets device_id"
        return value

    def cursor(self, entity: str) -> str:
        row = self.execute_one("SELECT cursor FROM sync_cursors WHERE entity = ?", (entity,))
        return row[0] if row else "0"

    def set_cursor(self, entity: str, cursor: str) -> None:
        self.execute(
            "INSERT INTO sync_cursors (entity, cursor, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (entity) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
            (entity, cursor, now_iso()),
        )

    def numbers_left(self, entity: str) -> int:
        row = self.execute_one(
            "SELECT coalesce(sum(last - next + 1), 0) FROM sync_number_blocks WHERE entity = ? AND next <= last",
            (entity,),
        )
        return int(row[0]) if row else 0

    def add_number_block(self, entity: str, first: int, last: int) -> None:
        self.execute("INSERT INTO sync_number_blocks (entity, next, last) VALUES (?, ?, ?)", (entity, first, last))

    # -- the host app's rows ------------------------------------------------------------------

    def rows(self, entity: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The host app's rows with these ids, as dicts of the entity's fields."""
        _check(entity)
        columns = ", ".join(data_fields(entity))
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            for row in self.execute(f"SELECT {columns} FROM {entity} WHERE id IN ({marks})", chunk):
                found[row["id"]] = dict(row)
        return found

    def row_exists(self, entity: str, record_id: str) -> bool:
        _check(entity)
        return self.execute_one(f"SELECT 1 FROM {entity} WHERE id = ?", (record_id,)) is not None

    def upsert(self, entity: str, records: list[dict[str, Any]]) -> None:
        """Insert records into the host app's table, or overwrite the rows with their ids."""
        _check(entity)
        fields = data_fields(entity)
        updates = ", ".join(f"{name} = excluded.{name}" for name in fields if name != "id")
        statement = (
            f"INSERT INTO {entity} ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))}) "
            f"ON CONFLICT (id) DO UPDATE SET {updates}"
        )
        self.execute_many(statement, [[record.get(name) for name in fields] for record in records])

    def write_record(self, entity: str, data: dict[str, Any]) -> bool:
        """Write one record (an upsert); returns whether it did. A tombstone of a record
        whose row this device does not hold (removed here, or never had) is not written:
        the row stays removed. The row itself says so, not the metadata."""
        if data.get("deleted_at") is not None and not self.row_exists(entity, data["id"]):
            return False
        self.upsert(entity, [data])
        return True

    # -- sync metadata ------------------------------------------------------------------------

    def metadata(self, entity: str, ids: list[str]) -> dict[str, Row]:
        found: dict[str, Row] = {}
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            query = f"SELECT * FROM sync_metadata WHERE entity = ? AND record_id IN ({marks})"
            for row in self.execute(query, [entity, *chunk]):
                found[row["record_id"]] = row
        return found

    def local_versions(self, meta_ids: list[int]) -> dict[int, int]:
        """The current ``local_version`` of these metadata rows (by their ``id``)."""
        found: dict[int, int] = {}
        for chunk in _chunks(meta_ids):
            marks = ",".join("?" * len(chunk))
            found.update(self.execute(f"SELECT id, local_version FROM sync_metadata WHERE id IN ({marks})", chunk))
        return found

    def pending(self, entity: str, *, after: int, limit: int) -> list[Row]:
        """Metadata of records with local changes still to push, in the order they were made."""
        return self.execute(
            "SELECT * FROM sync_metadata WHERE entity = ? AND sync_status = 'pending' AND id > ? ORDER BY id LIMIT ?",
            (entity, after, limit),
        )

    def counts(self, entity: str) -> dict[str, int]:
        """How many records of ``entity`` are pending, in conflict, rejected."""
        rows = self.execute(
            "SELECT sync_status, count(*) FROM sync_metadata WHERE entity = ? GROUP BY sync_status", (entity,)
        )
        counts = {"pending": 0, "conflict": 0, "rejected": 0, "synced": 0}
        counts.update({status: n for status, n in rows})
        return counts

    def pending_count(self, entity: str) -> int:
        """Records with changes to push (the partial index answers without a scan)."""
        row = self.execute_one(
            "SELECT count(*) FROM sync_metadata WHERE entity = ? AND sync_status = 'pending'", (entity,)
        )
        return int(row[0]) if row else 0

    def rejected(self, limit: int = 50) -> list[Row]:
        """Records the server refused (entity, record_id, reason), oldest first."""
        return self.execute(
            "SELECT entity, record_id, reason FROM sync_metadata WHERE sync_status = 'rejected' ORDER BY id LIMIT ?",
            (limit,),
        )

    def agree(self, entity: str, agreed: list[tuple[str, int, int]]) -> None:
        """Record that both sides hold these records at these versions, with no local
        changes left: (record_id, local_version, remote_version) each."""
        now = now_iso()
        self.execute_many(_AGREE_SQL, [(entity, rid, local, local, remote, now) for rid, local, remote in agreed])

    def keep_pending(self, entity: str, record_id: str, *, version: int, base: dict[str, Any]) -> None:
        """Local changes survive a merge: push them from the new base, the server's ``version``."""
        self.execute(
            "UPDATE sync_metadata SET remote_version = ?, base_data = ?, sync_status = 'pending', reason = NULL "
            "WHERE entity = ? AND record_id = ?",
            (version, json.dumps(base), entity, record_id),
        )

    def rebase(self, meta_id: int, *, version: int, base: dict[str, Any]) -> None:
        """A record pushed but edited again meanwhile stays pending, from the new base."""
        self.execute("UPDATE sync_metadata SET remote_version = ?, base_data = ? WHERE id = ?",
                     (version, json.dumps(base), meta_id))

    def reject(self, meta_id: int, reason: str) -> None:
        """Quarantine a record until it is edited."""
        self.execute("UPDATE sync_metadata SET sync_status = 'rejected', reason = ? WHERE id = ?", (reason, meta_id))

    def note_reason(self, meta_id: int, reason: str) -> None:
        """Say why a record is still pending (it is sent again next push)."""
        self.execute("UPDATE sync_metadata SET reason = ? WHERE id = ?", (reason, meta_id))

    def reject_new(self, entity: str, record_id: str, reason: str) -> None:
        """Quarantine a record this device holds now without having changed it (an import)."""
        self.execute(
            "INSERT INTO sync_metadata (entity, record_id, local_version, sync_status, reason, changed_at) "
            "VALUES (?, ?, 1, 'rejected', ?, ?) ON CONFLICT (entity, record_id) DO UPDATE SET "
            "sync_status = 'rejected', reason = excluded.reason",
            (entity, record_id, reason, now_iso()),
        )

    def forget(self, metas: list[Row]) -> None:
        """Drop the metadata of records, unless they changed again since they were read."""
        self.execute_many("DELETE FROM sync_metadata WHERE id = ? AND local_version = ?",
                          [(meta["id"], meta["local_version"]) for meta in metas])

    def keep_tombstones(self, entity: str, tombstones: list[tuple[str, dict[str, Any]]]) -> None:
        """Records whose row this device does not hold keep their tombstone after agreement
        (``agree`` clears it): (record_id, the record as the server holds it) each. The
        tombstone is what says the row stays removed; without it a later tombstone of the
        record would be written as a new row."""
        self.execute_many("UPDATE sync_metadata SET deleted_data = ? WHERE entity = ? AND record_id = ?",
                          [(json.dumps(data), entity, record_id) for record_id, data in tombstones])


#: Record that both sides hold the same record at a version (no local changes left).
_AGREE_SQL: Final = (
    "INSERT INTO sync_metadata (entity, record_id, local_version, synced_version, remote_version, "
    "last_synced_at, sync_status) VALUES (?, ?, ?, ?, ?, ?, 'synced') "
    "ON CONFLICT (entity, record_id) DO UPDATE SET synced_version = excluded.synced_version, "
    "remote_version = excluded.remote_version, last_synced_at = excluded.last_synced_at, "
    "sync_status = 'synced', base_data = NULL, deleted_data = NULL, reason = NULL"
)


def local_record(meta: Row, row: dict[str, Any] | None) -> dict[str, Any]:
    """The local record as stored: the host app's row, or for a hard-deleted one its
    tombstone (the row as it was, with ``deleted_at`` the time of the delete)."""
    if row is not None and meta["deleted_data"] is None:
        return row
    data = loads(meta["deleted_data"]) or {"id": meta["record_id"]}
    data["deleted_at"] = data.get("deleted_at") or meta["changed_at"]
    return data


def loads(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text else None


def _translated(exc: sqlite3.Error, path: str | Path) -> LocalStoreError:
    """sqlite3's error as ours, by SQLite's primary error code, with the sentence the user reads."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    detail = f"local database error: {exc} ({getattr(exc, 'sqlite_errorname', None) or type(exc).__name__}, {path})"
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return _damaged(path, detail)
    if code not in _PLAIN:  # a statement the file's schema does not take, ...: what SQLite said
        return LocalStoreError(f"local database error: {exc}")
    kind, plain = _PLAIN[code]
    return kind(detail, plain=plain.format(path=path, seconds=BUSY_TIMEOUT_MS // 1000))


def _damaged(path: str | Path, detail: str) -> DatabaseDamaged:
    return DatabaseDamaged(
        f"local database {path} is damaged ({detail})",
        plain=f"The database file {path} is damaged; CraftSync has not changed it. Restore it from a backup, "
              "or have the program that made it repair it, then sync again.",
    )


# SQLite's primary result codes (https://sqlite.org/rescode.html).
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_IOERR = 3, 5, 6, 8, 10
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 11, 13, 14, 26

#: Each failure a shop owner can do something about: its error, and what to tell them.
_PLAIN: Final[dict[int, tuple[type[LocalStoreError], str]]] = {
    _SQLITE_FULL: (DiskFull, "The disk holding the database file {path} is full: free some space on it, "
                             "then sync again (nothing was lost)."),
    _SQLITE_READONLY: (DatabaseReadOnly, "The database file {path} is read-only: make it (and its folder) "
                                         "writable, then sync again (nothing was lost)."),
    _SQLITE_PERM: (DatabaseReadOnly, "The database file {path} may not be written: make it (and its folder) "
                                     "writable, then sync again (nothing was lost)."),
    _SQLITE_BUSY: (DatabaseLocked, "The database file {path} is locked by another program (for over {seconds} "
                                   "seconds): let that program finish or close it, then sync again (nothing was lost)."),
    _SQLITE_LOCKED: (DatabaseLocked, "The database file {path} is locked by another program (for over {seconds} "
                                     "seconds): let that program finish or close it, then sync again (nothing was lost)."),
    _SQLITE_CANTOPEN: (DatabaseUnreachable, "The database file {path} cannot be opened: check that it exists and "
                                            "that its folder is writable, then sync again."),
    _SQLITE_IOERR: (DatabaseUnreachable, "The disk holding the database file {path} failed to read or write: "
                                         "check the disk, then sync again."),
}


def _first_line(exc: BaseException) -> str:
    """The reason of a database error without SQLAlchemy's second line (a link) or the SQL."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check(entity: str) -> None:
    if entity not in ENTITIES:
        raise LocalStoreError(f"unknown entity {entity!r}")


def _chunks(values: Sequence[Any], size: int = IDS_PER_QUERY) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])
