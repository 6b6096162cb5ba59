"""The central side of engine tests: the real reference server in-process
(``httpx.WSGITransport``) and raw reads of its database (the devices are
``tests.support.device``).

Reads for comparisons are raw: the central rows as plain SQL on a connection of its own
returns them. Nothing passes through the product's own normalising, so "identical" means the
same stored values, field by field.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from flask import Flask
from sqlalchemy import create_engine, text

from craftsync.contract.records import data_fields
from tests.support.api import API_KEY, make_app
from craftsync.worker.remote import RemoteClient, RemoteSettings


def remote_for(app: Flask) -> RemoteClient:
    """An API client that talks to ``app`` in-process, without sockets."""
    settings = RemoteSettings(base_url="http://central.test/api", api_key=API_KEY, max_attempts=2, max_backoff_s=0.1,
                              allow_plain_http=True)  # served in-process: nothing leaves
    return RemoteClient(settings, transport=httpx.WSGITransport(app=app))


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
