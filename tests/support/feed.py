"""A ``craftsync server`` process on a database of the test's choice, that a test may restart
on the same port and database, and a reader of its change feed that checks every page it
applies.

``tests.support.worker.central`` serves a fresh SQLite file; ``serve`` here serves any
``database_url`` (the suite's ``database_url`` fixture: SQLite, PostgreSQL or MariaDB).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import API_KEY
from tests.support.process import clean_env, free_port, start_server
from tests.support.worker import Central


def serve(directory: Path, database_url: str, *, port: int | None = None, run: int = 0) -> Central:
    """``craftsync server`` on ``database_url``, on ``port`` (a free one by default); its home
    and log (``server-<run>.log``) in ``directory``."""
    port = port or free_port()
    home = directory / "server-home"
    home.mkdir(exist_ok=True)
    env = clean_env(home, DATABASE_URL=database_url, API_KEYS=API_KEY, RATE_LIMIT="1000000/minute")
    service = start_server(env, port=port, log=directory / f"server-{run}.log", cwd=home, timeout=60,
                           fail=pytest.fail)
    return Central(f"http://127.0.0.1:{port}/api", API_KEY, service, database_url)


def restart(directory: Path, server: Central, *, run: int) -> Central:
    """Stop ``server`` and start another on the same port and database."""
    server.http.close()
    server.service.stop()
    port = int(httpx.URL(server.url).port or 0)
    return serve(directory, server.database_url, port=port, run=run)


@dataclass
class FeedReader:
    """A device's view of one entity's change feed, read page by page from a cursor.

    ``apply`` takes one page and fails when the feed breaks its promises: a record twice in
    one page, a record served again at a version not higher than the one already applied, a
    cursor that goes back."""

    entity: str
    cursor: str = "0"
    #: id -> the last record applied (its fields and version)
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)
    pages: int = 0
    records: int = 0

    def apply(self, page: dict[str, Any]) -> None:
        ids = [record["id"] for record in page["records"]]
        assert len(ids) == len(set(ids)), f"a page after {self.cursor} serves a record twice: {ids}"
        for record in page["records"]:
            before = self.seen.get(record["id"])
            assert before is None or record["version"] > before["version"], (
                f"{record['id']} served again after cursor {self.cursor} at version {record['version']}, "
                f"having been applied at version {before['version']}"
            )
            self.seen[record["id"]] = record
        assert int(page["next_cursor"]) >= int(self.cursor), f"the cursor went back: {self.cursor} -> {page['next_cursor']}"
        self.cursor = page["next_cursor"]
        self.pages += 1
        self.records += len(ids)
