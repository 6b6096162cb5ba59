"""Real services for the queue, worker and CLI tests: a Redis database of the test's own,
the reference server over HTTP and ``craftsync worker`` processes (``tests.support.device``
puts a desktop around them).

Every process is started in a session of its own (``start_new_session=True``), so that a
test can SIGKILL a worker with all its children at once, as a crash would, and teardown
leaves nothing running. Every wait has a timeout.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import redis
from sqlalchemy import create_engine, text

from craftsync.contract.records import data_fields
from tests.support import process as process_helpers
from tests.support.api import API_KEY, new_id
from tests.conftest import service_missing
from tests.support.process import (  # noqa: F401  (CLAIM_*, ROOT, clean_env, free_port: imported from here)
    CLAIM_KEY,
    CLAIM_TTL_S,
    CRAFTSYNC,
    ROOT,
    RedisDB,
    Service,
    claim_redis_db,
    clean_env,
    free_port,
    start_server,
    wait_until,
)
from tests.support.sync import central_rows

REDIS_HOST: Final = os.environ.get("CRAFTSYNC_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT: Final = int(os.environ.get("CRAFTSYNC_TEST_REDIS_PORT", "6379"))
#: Databases these tests may take; 0 is left to people, 15 to conftest.REDIS_TEST_URL.
REDIS_DBS: Final = range(1, 15)


# -- Redis ---------------------------------------------------------------------------------


@contextmanager
def own_redis_db() -> Iterator[RedisDB]:
    """One Redis database of the test's own on the test Redis server, claimed and flushed,
    flushed again at the end; the test fails when every one is taken."""
    db = claim_redis_db(REDIS_HOST, REDIS_PORT, REDIS_DBS, fail=pytest.fail)
    try:
        yield db
    finally:
        db.release()


@pytest.fixture
def redis_db() -> Iterator[RedisDB]:
    """A Redis database of this test's own: the code uses fixed key names, so tests (and
    other people's runs on the same server) must not share one."""
    probe = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=2)
    try:
        probe.ping()
    except redis.RedisError as exc:
        service_missing(f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}: {exc}")
    finally:
        probe.close()
    with own_redis_db() as db:
        yield db


@contextmanager
def redis_server(directory: Path) -> Iterator[tuple[RedisDB, Service]]:
    """A Redis server of its own (``redis-server`` on a free loopback port, its files in
    ``directory``) and its process, which a test may kill to take the broker away; killed at
    the end of the block."""
    binary = shutil.which("redis-server")
    if binary is None:
        service_missing("redis-server is not installed (apt-get install redis-server)")
        raise AssertionError("unreachable")  # service_missing skips or fails
    port = free_port()
    service = Service([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                       "--dir", str(directory)], env=dict(os.environ), log=directory / "redis.log", cwd=directory)
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)

    def answers() -> bool:
        if not service.alive():
            pytest.fail(f"redis-server exited:\n{service.tail()}")
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    try:
        wait_until(answers, timeout=10, what="the private redis-server")
        yield RedisDB(0, f"redis://127.0.0.1:{port}/0", client), service
    finally:
        client.close()
        if service.alive():
            service.kill()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisDB]:
    """A Redis server of this test's own (``redis_server``).

    For tests of ``craftsync sync --wait``, which follows the server-wide events channel:
    on a Redis shared with other runs it would also see their events."""
    with redis_server(tmp_path) as (db, _service):
        yield db


class EventLog(process_helpers.EventLog):
    """Every event on the events channel of the test's Redis database from subscription on,
    collected by a thread; a wait that times out fails the test. Filter by run id or entity."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client, fail=pytest.fail)


@pytest.fixture
def events(redis_db: RedisDB) -> Iterator[EventLog]:
    log = EventLog(redis_db.client)
    yield log
    log.close()


# -- processes -----------------------------------------------------------------------------


class ServerReads:
    """Reads of a reference server over HTTP, through ``http`` (an authorised client on its API root)."""

    http: httpx.Client

    def get(self, entity: str, record_id: str) -> dict[str, Any]:
        response = self.http.get(f"/{entity}/{record_id}")
        assert response.status_code == 200, response.text[:500]
        return dict(response.json())

    def live(self, entity: str) -> dict[str, dict[str, Any]]:
        """Live records on the server, keyed by id, without versions (the whole change feed)."""
        return server_live_http(self.http, entity)


@dataclass
class Central(ServerReads):
    """The reference server, run as ``craftsync server`` on a free loopback port."""

    url: str  # ends in /api
    key: str
    service: Service
    #: Its central database, for reads with plain SQL beside the server.
    database_url: str
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60)

    def push(self, entity: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST records in batches of 5,000; the results in order."""
        results: list[dict[str, Any]] = []
        for start in range(0, len(records), 5000):
            response = self.http.post(f"/{entity}", json={"records": records[start : start + 5000]})
            assert response.status_code == 200, response.text[:500]
            results.extend(response.json()["results"])
        return results

    def stored(self, entity: str) -> dict[str, dict[str, Any]]:
        """Live records in the central database exactly as stored (plain SQL), keyed by id."""
        return central_rows(self.database_url, entity)

    def bookkeeping(self, entity: str) -> tuple[dict[str, int], list[int], int]:
        """Raw from the central database: every record's ``version`` by id, every ``seq`` of
        the entity's change feed, and its counter (the last ``seq`` handed out). A page of the
        feed is read first, as a device would, so that every committed change has its place."""
        assert self.http.get(f"/{entity}", params={"limit": 1}).status_code == 200
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(text(f"SELECT id, version, seq FROM craftsync_{entity}")).all()
                counter = conn.execute(text("SELECT value FROM craftsync_counters WHERE name = :name"), {"name": entity}).scalar()
        finally:
            engine.dispose()
        return {row[0]: row[1] for row in rows}, [row[2] for row in rows], int(counter or 0)


def server_live_http(http: httpx.Client, entity: str) -> dict[str, dict[str, Any]]:
    """Live records behind ``http`` (an authorised client on the API root), keyed by id."""
    records: dict[str, dict[str, Any]] = {}
    since = "0"
    while True:
        response = http.get(f"/{entity}", params={"since": since, "limit": 5000})
        assert response.status_code == 200, response.text[:500]
        page = response.json()
        for change in page["records"]:
            record = {name: change[name] for name in data_fields(entity)}
            if record["deleted_at"] is None:
                records[record["id"]] = record
            else:
                records.pop(record["id"], None)
        since = page["next_cursor"]
        if not page["has_more"]:
            return records


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    """A fresh central database behind a real HTTP server."""
    port = free_port()
    home = tmp_path / "server-home"
    home.mkdir()
    database_url = f"sqlite:///{tmp_path / 'central.db'}"
    env = clean_env(home, DATABASE_URL=database_url, API_KEYS=API_KEY, RATE_LIMIT="1000000/minute")
    service = start_server(env, port=port, log=tmp_path / "server.log", cwd=home, timeout=30, fail=pytest.fail)
    server = Central(f"http://127.0.0.1:{port}/api", API_KEY, service, database_url)
    try:
        yield server
    finally:
        server.http.close()
        service.stop()


def start_worker(env: dict[str, str], *, log: Path, cwd: Path, processes: int = 1, threads: int = 2) -> Service:
    """``craftsync worker`` with ``env`` (REDIS_URL, CRAFTSYNC_DB, REMOTE_API_URL, REMOTE_API_KEY)."""
    return Service([*CRAFTSYNC, "worker", "--processes", str(processes), "--threads", str(threads)],
                   env=env, log=log, cwd=cwd)


def heartbeats(client: redis.Redis) -> set[bytes]:
    """The dramatiq consumers that have fetched from this database recently."""
    now_ms = time.time() * 1000
    members: list[tuple[bytes, float]] = client.zrange("dramatiq:__heartbeats__", 0, -1, withscores=True)  # type: ignore[assignment]
    return {member for member, score in members if now_ms - score < 5_000}


# -- queue and server helpers ---------------------------------------------------------------


def queue_broker(url: str) -> Any:
    """dramatiq's RedisBroker on ``url``, as ``craftsync sync`` builds it to enqueue."""
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(url=url)


def customers_for_server(count: int) -> list[dict[str, Any]]:
    """New customer records as another device would push them."""
    return [{"id": new_id(), "name": f"Remote {i}", "email": f"r{i}@example.com", "city": "York",
             "created_at": "2026-01-02T03:04:05.000Z", "updated_at": "2026-01-02T03:04:05.000Z"}
            for i in range(count)]
