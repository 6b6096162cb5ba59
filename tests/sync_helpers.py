"""Devices and a central server for engine tests: real local stores, the real reference
server in-process (``httpx.WSGITransport``), and plain-SQL writes as the host app makes them."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from flask import Flask

from server.records import data_fields
from tests.api_helpers import API_KEY, make_app
from worker.engine import RunResult, SyncEngine, SyncOptions
from worker.remote import RemoteClient, RemoteSettings
from worker.store import LocalStore


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
        """Live records (not soft-deleted), canonical, keyed by id."""
        rows = self.sql(f"SELECT * FROM {entity} WHERE deleted_at IS NULL")
        return {row["id"]: SyncEngine._canon(entity, dict(row)) for row in rows}

    def close(self) -> None:
        self.host.close()
        self.store.close()
        self.engine.remote.close()


def server_live(app: Flask, entity: str) -> dict[str, dict[str, Any]]:
    """Live records on the server, keyed by id, without versions."""
    client = remote_for(app)
    records: dict[str, dict[str, Any]] = {}
    since = "0"
    while True:
        page = client.pull(entity, since=since, limit=5000)
        for record in page.records:
            record = {name: record[name] for name in data_fields(entity)}
            if record["deleted_at"] is None:
                records[record["id"]] = record
            else:
                records.pop(record["id"], None)
        since = page.next_cursor
        if not page.has_more:
            client.close()
            return records


def central_app(tmp_path: Path) -> Flask:
    return make_app(f"sqlite:///{tmp_path / 'central.db'}")
