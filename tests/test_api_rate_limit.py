"""Per-key rate limits shared across server processes through Redis (spec §5, §9)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import REDIS_TEST_URL, service_missing
from tests.support.process import clean_env, free_port, start_server


@pytest.fixture
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_TEST_URL).ping()
    except redis.RedisError as exc:
        service_missing(f"Redis is not reachable at {REDIS_TEST_URL}: {exc}")
    return REDIS_TEST_URL


@pytest.fixture
def two_servers(tmp_path: Path, sqlite_url: str, redis_url: str) -> Iterator[tuple[list[httpx.Client], str, str]]:
    """Two ``craftsync server`` processes on one database, counting in the same Redis,
    3 requests a minute per key; their API clients, and two fresh keys (so that earlier
    runs' counters do not interfere)."""
    key, other = f"key-{secrets.token_hex(8)}", f"key-{secrets.token_hex(8)}"
    env = clean_env(tmp_path, DATABASE_URL=sqlite_url, API_KEYS=f"{key},{other}", RATE_LIMIT="3/minute",
                    REDIS_URL=redis_url)
    services, clients = [], []
    try:
        for n in range(2):
            port = free_port()
            services.append(start_server(env, port=port, log=tmp_path / f"server-{n}.log", cwd=tmp_path,
                                         name=f"server {n}", fail=pytest.fail))
            clients.append(httpx.Client(base_url=f"http://127.0.0.1:{port}/api", timeout=30))
        yield clients, key, other
    finally:
        for client in clients:
            client.close()
        for service in services:
            service.stop()


def test_two_server_processes_share_one_budget_per_key_in_redis(
    two_servers: tuple[list[httpx.Client], str, str],
) -> None:
    # Given two server processes on one database, both counting in the same Redis
    clients, key, other = two_servers
    auth = {"Authorization": f"Bearer {key}"}

    # When one key makes two requests on each server
    statuses = [clients[n % 2].get("/customers", headers=auth).status_code for n in range(4)]

    # Then the fourth is refused with Retry-After, and another key is still served
    assert statuses == [200, 200, 200, 429]
    refused = clients[0].get("/customers", headers=auth)
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.json()["error"] == "rate_limited"
    assert clients[1].get("/customers", headers={"Authorization": f"Bearer {other}"}).status_code == 200
