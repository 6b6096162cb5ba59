"""Engine creation and schema migration for the central database.

SQLite needs two adjustments to behave like a server database under concurrent writers:
WAL mode with a busy timeout, and write transactions that take the write lock at BEGIN
(``BEGIN IMMEDIATE``) instead of failing half-way when two readers both try to upgrade.
A connection opened with ``execution_options(write=True)`` gets the latter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: How long an SQLite writer waits for the lock before giving up, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000


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
    """Create or upgrade the schema to ``revision``."""
    command.upgrade(alembic_config(engine), revision)
