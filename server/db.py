"""Engine creation and schema migration for the central database.

SQLite needs two adjustments to behave like a server database under concurrent writers:
WAL mode with a busy timeout (and temporary files in memory, for the capture triggers'
statement journals), and write transactions that take the write lock at BEGIN
(``BEGIN IMMEDIATE``) instead of failing half-way when two readers both try to upgrade.
A connection opened with ``execution_options(write=True)`` gets the latter.

Any number of server processes may start at once on a new database. ``migrate`` holds a
lock across the whole upgrade, so that one process creates the schema and the others then
find it there: an advisory lock on PostgreSQL (``pg_advisory_lock``) and MariaDB/MySQL
(``GET_LOCK``); on SQLite the upgrade's ``BEGIN IMMEDIATE`` takes the file's write lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: How long an SQLite writer waits for the lock before giving up, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: The advisory lock that serialises migrations: a PostgreSQL lock key (any 64-bit number
#: this application owns) and a MariaDB/MySQL lock name.
MIGRATION_LOCK_KEY: Final = 0x43524654_53594E43  # "CRFTSYNC"
MIGRATION_LOCK_NAME: Final = "craftsync.migrate"
#: How long a starting server waits for another one's migration, in seconds.
MIGRATION_LOCK_TIMEOUT_S: Final = 300


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the settings each backend needs."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        _tune_sqlite(engine)
        return engine
    if url.startswith("postgresql+psycopg"):
        # psycopg prepares a statement after 5 runs, and PostgreSQL may then keep a generic
        # plan costed while the table was small: a batch's `id IN (...)` lookup turned into a
        # full scan (2 s per batch at 70,000 rows). Plan each statement for its values.
        kwargs.setdefault("connect_args", {"prepare_threshold": None})
    elif url.startswith("mysql"):
        kwargs.setdefault("isolation_level", "READ COMMITTED")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        # The capture triggers make each write keep a statement journal, a temporary file by
        # default: in memory, a batch push is a third faster (docs/BENCHMARKS.md).
        cursor.execute("PRAGMA temp_store = MEMORY")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def alembic_config(engine: Engine) -> Config:
    """An Alembic configuration that migrates ``engine``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the schema to ``revision``; concurrent callers take turns."""
    if engine.dialect.name == "sqlite":
        _migrate_sqlite(engine, revision)
    else:
        command.upgrade(alembic_config(engine), revision)


def _sqlite_locked(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and "database is locked" in str(exc)


@retry(retry=retry_if_exception(_sqlite_locked), stop=stop_after_attempt(5),
       wait=wait_random_exponential(multiplier=0.1, max=2), reraise=True)
def _migrate_sqlite(engine: Engine, revision: str) -> None:
    # The upgrade is one BEGIN IMMEDIATE transaction, which waits for the file's write lock;
    # but a brand-new file's first connections also switch it to WAL, and SQLite answers
    # "database is locked" at once, without waiting, when several do so together (one start
    # in a few dozen of six at once). Nothing was written then: the upgrade is tried again.
    command.upgrade(alembic_config(engine), revision)


class MigrationLockTimeout(RuntimeError):
    """Raised when another process's migration holds the lock for too long."""


@contextmanager
def migration_lock(connection: Connection) -> Iterator[None]:
    """Hold the database-wide migration lock on ``connection`` while the block runs.

    The advisory locks belong to the session, so they outlive the block's transactions and
    go with the connection if the process dies. SQLite needs none: the migration runs in
    one ``BEGIN IMMEDIATE`` transaction (see ``migrations/env.py``).
    """
    dialect = connection.dialect.name
    if dialect == "postgresql":
        timeout_ms = MIGRATION_LOCK_TIMEOUT_S * 1000
        connection.execute(text(f"SET lock_timeout = {timeout_ms}"))
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.execute(text("RESET lock_timeout"))
        connection.commit()
        release = text("SELECT pg_advisory_unlock(:key)").bindparams(key=MIGRATION_LOCK_KEY)
    elif dialect in ("mysql", "mariadb"):
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :timeout)"), {"name": MIGRATION_LOCK_NAME, "timeout": MIGRATION_LOCK_TIMEOUT_S}
        ).scalar()
        connection.commit()
        if got != 1:
            raise MigrationLockTimeout(
                f"another server's migration held the lock for over {MIGRATION_LOCK_TIMEOUT_S} s"
            )
        release = text("SELECT RELEASE_LOCK(:name)").bindparams(name=MIGRATION_LOCK_NAME)
    else:
        yield
        return
    try:
        yield
    finally:
        connection.rollback()  # a failed upgrade leaves its transaction aborted
        connection.execute(release)
        connection.commit()
