"""Small helpers for talking to the API app in tests."""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from craftsync.server.app import create_app
from craftsync.server.config import ServerSettings

API_KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def make_app(database_url: str, **settings: Any) -> Flask:
    settings.setdefault("api_keys", (API_KEY,))
    settings.setdefault("rate_limit", "100000/minute")
    return create_app(ServerSettings(database_url=database_url, **settings))


def new_id() -> str:
    """A time-ordered 128-bit id as 32 hex digits, as the local store makes them."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def customer(**fields: Any) -> dict[str, Any]:
    record = {"id": new_id(), "name": f"Customer {secrets.token_hex(3)}", "email": "ann@example.com"}
    record.update(fields)
    return record


def push(client: FlaskClient, entity: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = client.post(f"/api/{entity}", json={"records": records}, headers=AUTH)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["results"]


def pull_all(client: FlaskClient, entity: str, *, since: str = "0", limit: int = 500) -> tuple[list[dict[str, Any]], str]:
    """Every change after ``since``; returns the records and the final cursor."""
    records: list[dict[str, Any]] = []
    while True:
        page = client.get(f"/api/{entity}?since={since}&limit={limit}", headers=AUTH).get_json()
        records.extend(page["records"])
        since = page["next_cursor"]
        if not page["has_more"]:
            return records, since


def in_ci() -> bool:
    return os.environ.get("CI") == "true"
