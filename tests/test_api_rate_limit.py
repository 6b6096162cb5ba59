"""Per-key rate limits shared across server processes through Redis (spec §5, §9)."""

from __future__ import annotations

import secrets

import pytest
import redis

from tests.support.api import make_app
from tests.conftest import REDIS_TEST_URL, service_missing


@pytest.fixture
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_TEST_URL).ping()
    except redis.RedisError as exc:
        service_missing(f"Redis is not reachable at {REDIS_TEST_URL}: {exc}")
    return REDIS_TEST_URL


def test_two_server_processes_share_one_budget_per_key_in_redis(sqlite_url: str, redis_url: str) -> None:
    # Given two servers on one database, both counting in the same Redis, 3 requests a minute per key
    key = f"key-{secrets.token_hex(8)}"  # fresh, so earlier runs' counters do not interfere
    other = f"key-{secrets.token_hex(8)}"
    apps = [make_app(sqlite_url, api_keys=(key, other), rate_limit="3/minute", redis_url=redis_url) for _ in range(2)]
    clients = [app.test_client() for app in apps]
    auth = {"Authorization": f"Bearer {key}"}

    # When one key makes two requests on each server
    statuses = [clients[n % 2].get("/api/customers", headers=auth).status_code for n in range(4)]

    # Then the fourth is refused with Retry-After, and another key is still served
    assert statuses == [200, 200, 200, 429]
    refused = clients[0].get("/api/customers", headers=auth)
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.get_json()["error"] == "rate_limited"
    assert clients[1].get("/api/customers", headers={"Authorization": f"Bearer {other}"}).status_code == 200
