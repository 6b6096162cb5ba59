"""Progress events on Redis pub/sub (spec §7): publishing them and following them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import redis

#: The channel every worker publishes on and every listener follows (on database 0).
CHANNEL: Final = "craftsync:events"


def channel(client: redis.Redis) -> str:
    """The events channel of the client's Redis database.

    Pub/sub channels are shared by every database of a Redis server, so installs that
    share a server through different databases would see each other's events; a database
    other than 0 gets its own channel, ``craftsync:events:<db>``.
    """
    db = int(client.connection_pool.connection_kwargs.get("db") or 0)
    return CHANNEL if db == 0 else f"{CHANNEL}:{db}"


class Publisher:
    """A progress sink for the engine that publishes each event as one JSON message."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.channel = channel(client)

    def __call__(self, event: dict[str, Any]) -> None:
        self.client.publish(self.channel, json.dumps(event))


def follow(
    pubsub: redis.client.PubSub, *, timeout_s: float, match: Callable[[dict[str, Any]], bool] = lambda e: True
) -> Iterator[dict[str, Any]]:
    """Events from an already subscribed ``pubsub`` that ``match``, until ``timeout_s`` passes
    without one (pub/sub channels span every Redis database: others' events do not count)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is None or message["type"] != "message":
            continue
        try:
            event = json.loads(message["data"])
        except ValueError:
            continue  # not ours
        if isinstance(event, dict) and match(event):
            deadline = time.monotonic() + timeout_s
            yield event
