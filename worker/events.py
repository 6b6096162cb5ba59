"""Progress events on Redis pub/sub (spec §7): publishing them and following them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, Final

import redis

#: The one channel every worker publishes on and every listener follows.
CHANNEL: Final = "craftsync:events"


class Publisher:
    """A progress sink for the engine that publishes each event as one JSON message."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def __call__(self, event: dict[str, Any]) -> None:
        self.client.publish(CHANNEL, json.dumps(event))


def follow(pubsub: redis.client.PubSub, *, timeout_s: float) -> Iterator[dict[str, Any]]:
    """Events from an already subscribed ``pubsub`` until ``timeout_s`` passes without one."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is None or message["type"] != "message":
            continue
        deadline = time.monotonic() + timeout_s
        try:
            yield json.loads(message["data"])
        except ValueError:
            continue  # not ours
