"""Sync requests on the Redis queue: enqueueing, coalescing, and the one-run-per-entity lock.

A request for an entity that already has a run waiting in the queue joins that run instead
of adding another (``craftsync:queued:<entity>`` names the waiting run). Each request still
queues a message for the run it joined: whichever message a live worker takes first claims
the run and does it; the others find it claimed and do nothing. So a waiting run whose
message is stuck with a dead worker is done by the next request's message. A run holds
``craftsync:lock:<entity>`` while it works, renewed in the background; a worker that dies
stops renewing it, so the lock lapses within ``LOCK_TTL_S`` and the next request runs
promptly. A run that finds the lock taken waits for it through dramatiq's retries. A broker
that restarts while a run holds the lock comes back without it (no persistence) or with it
lapsing within ``LOCK_TTL_S`` (persistence): nobody has to clean it up.

"All" is a chain: customers, then quotes, then orders (spec §6.6), each run enqueueing the
next when it ends, so that parents always reach the server before their children.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import dramatiq
import redis
from redis.lock import Lock

from craftsync.contract.vocabulary import ALL_ENTITIES
from craftsync.worker.errors import SyncError

#: Seconds a run's lock outlives its last renewal: how soon a crashed worker's entity frees up.
LOCK_TTL_S: Final = 10
#: How long a waiting run stays in Redis unclaimed: only a clean-up for runs nobody ran.
QUEUED_TTL_S: Final = 24 * 3600


class EntityBusy(SyncError):
    """Raised when another worker is syncing the entity; dramatiq retries the message."""


def queue_name(entity: str) -> str:
    return f"craftsync-{entity}"


def actor_name(entity: str) -> str:
    return f"sync_{entity}"


def _queued_key(entity: str) -> str:
    return f"craftsync:queued:{entity}"


#: Join the waiting run if there is one, else become it. Atomic, so no request is lost
#: between a run starting and a request joining it. KEYS[1]: the entity's queued hash;
#: ARGV: new run id, the chain after this entity (JSON), the request ids (JSON), TTL.
#: Returns {is_new, run_id}.
_JOIN_OR_QUEUE = """
local waiting = redis.call('HGET', KEYS[1], 'run_id')
if waiting then
  for _, field in ipairs({'then', 'requests'}) do
    local merged = cjson.decode(redis.call('HGET', KEYS[1], field) or '[]')
    for _, item in ipairs(cjson.decode(field == 'then' and ARGV[2] or ARGV[3])) do table.insert(merged, item) end
    if #merged > 0 then redis.call('HSET', KEYS[1], field, cjson.encode(merged)) end
  end
  return {0, waiting}
end
redis.call('HSET', KEYS[1], 'run_id', ARGV[1], 'then', ARGV[2], 'requests', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {1, ARGV[1]}
"""

#: Claim the waiting run if it is ours: {then, requests} as JSON, or nil.
_CLAIM = """
if redis.call('HGET', KEYS[1], 'run_id') ~= ARGV[1] then return nil end
local claimed = {redis.call('HGET', KEYS[1], 'then') or '[]', redis.call('HGET', KEYS[1], 'requests') or '[]'}
redis.call('DEL', KEYS[1])
return claimed
"""

def request_sync(
    broker: dramatiq.Broker,
    client: redis.Redis,
    entities: list[str],
    *,
    direction: str,
    policy: str,
    requests: list[str] | None = None,
) -> str:
    """Queue a sync of ``entities`` in order; returns the run id of the first one's run.

    ``requests`` are ids the caller chose to recognise its runs by: every event of every run
    that serves this request (joined or chained) lists them in ``requests``.
    """
    first, rest = entities[0], entities[1:]
    _is_new, run_id = client.eval(
        _JOIN_OR_QUEUE, 1, _queued_key(first), uuid.uuid4().hex, json.dumps(rest), json.dumps(requests or []),
        QUEUED_TTL_S,
    )
    run_id = run_id.decode() if isinstance(run_id, bytes) else str(run_id)
    message = dramatiq.Message(
        queue_name=queue_name(first),
        actor_name=actor_name(first),
        args=(),
        kwargs={"direction": direction, "policy": policy, "run_id": run_id},
        options={},
    )
    broker.enqueue(message)  # also when joining: see the module docstring
    return run_id


def take_queued(client: redis.Redis, entity: str, run_id: str) -> tuple[list[str], list[str]] | None:
    """Claim the waiting run ``run_id``: the chain it must continue with and the request ids
    it serves; None when another message already claimed it (or ran it before a crash)."""
    claimed = client.eval(_CLAIM, 1, _queued_key(entity), run_id)
    if not claimed:
        return None
    then, requests = (json.loads(part) for part in claimed)
    return ordered(then), list(dict.fromkeys(requests))


def _lock_key(entity: str) -> str:
    return f"craftsync:lock:{entity}"


def running(client: redis.Redis) -> list[str]:
    """The entities a live worker is syncing now (their lock is held)."""
    return [entity for entity in ALL_ENTITIES if client.exists(_lock_key(entity))]


@contextmanager
def entity_lock(client: redis.Redis, entity: str) -> Iterator[None]:
    """Hold the entity's lock for the block, renewing it; EntityBusy when another run has it."""
    lock = Lock(client, _lock_key(entity), timeout=LOCK_TTL_S, thread_local=False)
    if not lock.acquire(blocking=False):
        raise EntityBusy(f"a sync of {entity} is already running")
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LOCK_TTL_S / 3):
            try:
                try:
                    lock.reacquire()
                except redis.exceptions.LockNotOwnedError:  # a broker restarted empty lost it
                    lock.acquire(blocking=False)  # hold it again, unless another run took it meanwhile
            except redis.RedisError:
                pass  # the broker is away: try again at the next turn

    renewer = threading.Thread(target=renew, name=f"lock-{entity}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        try:
            lock.release()
        except (redis.exceptions.LockError, redis.RedisError):
            pass  # it lapsed meanwhile, or the broker is away (and it lapses there): nothing to release


def ordered(entities: list[str]) -> list[str]:
    """``entities`` in dependency order (customers, quotes, orders), each once."""
    return [entity for entity in ALL_ENTITIES if entity in set(entities)]


def sync_order(entities: list[str]) -> list[str]:
    """What a request for ``entities`` syncs, in the order it syncs them: those named, or
    every entity ("all") when it names none."""
    return ordered(entities) or list(ALL_ENTITIES)
