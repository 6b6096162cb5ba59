"""Devices and a central server for engine tests: real local stores, the real reference
server in-process (``httpx.WSGITransport``), and plain-SQL writes as the host app makes them.

Reads for comparisons are raw on both sides: the local rows as SQLite stores them, the
central rows as plain SQL on a connection of its own returns them. Nothing passes through
the product's own normalising, so "identical" means the same stored values, field by field.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from flask import Flask
from sqlalchemy import create_engine, text

from craftsync.contract.records import data_fields
from tests.support.api import API_KEY, make_app
from craftsync.worker.engine import RunResult, SyncEngine, SyncOptions
from craftsync.worker.remote import RemoteClient, RemoteSettings
from craftsync.worker.store import LocalStore


def remote_for(app: Flask) -> RemoteClient:
    """An API client that talks to ``app`` in-process, without sockets."""
    settings = RemoteSettings(base_url="http://central.test/api", api_key=API_KEY, max_attempts=2, max_backoff_s=0.1)
    return RemoteClient(settings, transport=httpx.WSGITransport(app=app))


@dataclass
class Device:
    """One desktop: its SQLite file, a host-app connection of its own, and a sync engine."""

    path: Path
    app: Flask
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = LocalStore(self.path)
        self.engine = SyncEngine(self.store, remote_for(self.app), progress=self.events.append)
        self.host = sqlite3.connect(self.path, isolation_level=None)  # the host app's own connection
        self.host.row_factory = sqlite3.Row

    def sql(self, statement: str, *args: Any) -> list[sqlite3.Row]:
        """Run SQL as the host app does: plain statements, autocommit."""
        return self.host.execute(statement, args).fetchall()

    def sync(self, entity: str, direction: str = "both", policy: str = "remote") -> RunResult:
        return self.engine.sync(entity, SyncOptions(direction=direction, policy=policy))  # type: ignore[arg-type]

    def sync_all(self, direction: str = "both", policy: str = "remote") -> list[RunResult]:
        return [self.sync(e, direction, policy) for e in ("customers", "quotes", "orders")]

    def live(self, entity: str) -> dict[str, dict[str, Any]]:
        """Live records (not soft-deleted) exactly as stored, keyed by id."""
        return local_rows(self.host, entity)

    def rows(self, entity: str) -> dict[str, dict[str, Any]]:
        """Every record, soft-deleted ones too, exactly as stored, keyed by id."""
        return local_rows(self.host, entity, live_only=False)

    def pending(self) -> int:
        """Records whose local state is not agreed with the server (pending, conflict, rejected)."""
        return int(self.sql("SELECT count(*) FROM sync_metadata WHERE sync_status != 'synced'")[0][0])

    def close(self) -> None:
        self.host.close()
        self.store.close()
        self.engine.remote.close()


def local_rows(conn: sqlite3.Connection, entity: str, *, live_only: bool = True) -> dict[str, dict[str, Any]]:
    """The entity's rows in a local SQLite file, its contract fields exactly as stored."""
    where = " WHERE deleted_at IS NULL" if live_only else ""
    cursor = conn.execute(f"SELECT {', '.join(data_fields(entity))} FROM {entity}{where}")
    names = [column[0] for column in cursor.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def central_rows(database_url: str, entity: str, *, live_only: bool = True) -> dict[str, dict[str, Any]]:
    """The entity's rows in the central database, read with plain SQL on a connection of
    their own, as stored. PostgreSQL's and MariaDB's NUMERIC come from the driver as
    ``Decimal``, whose text keeps the column's scale (``Decimal('1500.00')`` -> ``'1500.00'``),
    so they are given as that text; SQLite stores the text itself."""
    engine = create_engine(database_url)
    where = " WHERE deleted_at IS NULL" if live_only else ""
    try:
        with engine.connect() as conn:
            result = conn.execute(text(f"SELECT {', '.join(data_fields(entity))} FROM {entity}{where}"))
            rows = [dict(row._mapping) for row in result]
    finally:
        engine.dispose()
    return {
        row["id"]: {name: str(value) if isinstance(value, Decimal) else value for name, value in row.items()}
        for row in rows
    }


def database_url_of(app: Flask) -> str:
    """The URL of the central database behind a reference server app."""
    return app.extensions["craftsync.engine"].url.render_as_string(hide_password=False)


def server_live(app: Flask, entity: str) -> dict[str, dict[str, Any]]:
    """Live records in the server's database, exactly as stored, keyed by id."""
    return central_rows(database_url_of(app), entity)


def central_app(tmp_path: Path) -> Flask:
    return make_app(f"sqlite:///{tmp_path / 'central.db'}")
