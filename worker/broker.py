"""The worker's side of the Redis broker: the one place where redis errors are translated.

Queueing a sync, following events and checking that the broker answers all talk to Redis;
wrapped in ``broker_errors``, a ``redis.RedisError`` leaves as ``BrokerUnavailable`` (a
``SyncError``) naming the broker without its password.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import redis
from sqlalchemy.engine import make_url

from craftsync.worker.errors import BrokerUnavailable

#: How long a check that the broker answers waits for the connection.
PING_TIMEOUT_S: Final = 3.0


@contextmanager
def broker_errors(url: str | None = None) -> Iterator[None]:
    """Turn a redis error inside the block into BrokerUnavailable."""
    try:
        yield
    except redis.RedisError as exc:
        where = f" at {safe_url(url)}" if url else ""
        raise BrokerUnavailable(f"cannot reach the broker{where}: {exc}", reason=str(exc)) from exc


def ping(url: str, *, timeout_s: float = PING_TIMEOUT_S) -> None:
    """Check that the broker at ``url`` answers; BrokerUnavailable when it does not."""
    with broker_errors(url), redis.Redis.from_url(url, socket_connect_timeout=timeout_s) as client:
        client.ping()


def safe_url(url: str) -> str:
    """A broker URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)
