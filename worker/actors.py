"""The dramatiq actors: one per entity, each on its own queue.

This module is the worker process's edge: importing it reads the settings from the
environment and sets up the Redis broker, which is what ``dramatiq worker.actors`` (run by
``craftsync worker``) expects. Each worker thread keeps its own local-store connection and
API client.
"""

from __future__ import annotations

import gc
import logging
import re
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, Final

import dramatiq
import redis
import tenacity
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage

from craftsync.contract.records import ENTITIES
from craftsync.contract.vocabulary import Direction, Policy, values
from craftsync.worker.engine import SyncEngine, SyncOptions
from craftsync.worker.errors import ConfigurationError, LocalStoreError, SyncError
from craftsync.worker.events import Publisher
from craftsync.worker.imports import CHUNK_ROWS, IMPORT_ACTOR, IMPORT_QUEUE, _tally_key, record_chunk, record_failure
from craftsync.worker.queue import EntityBusy, actor_name, entity_lock, queue_name, request_sync, take_queued
from craftsync.worker.remote import RemoteClient
from craftsync.worker.settings import Settings
from craftsync.worker.store import LocalStore, migrate

log = logging.getLogger(__name__)
# One line per HTTP request and per migration check drowns what a run did; the runs log that.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)

#: How long a dead worker's message waits before Redis may hand it to another worker (ms;
#: dramatiq's default is a minute, and this is only the earliest). Nothing waits for it:
#: the next request queues a message of its own, and a redelivered run that was already
#: claimed does nothing.
HEARTBEAT_TIMEOUT_MS: Final = 15_000
#: A bulk pull of hundreds of thousands of records may take minutes.
TIME_LIMIT_MS: Final = 60 * 60 * 1000
#: How often a run waits for a busy entity (each retry backs off up to MAX_BACKOFF_MS).
MAX_BUSY_RETRIES: Final = 2000
MAX_BACKOFF_MS: Final = 2000
#: Attempts at a message whose run raised (a failed sync does not raise: it is recorded).
MAX_CRASH_RETRIES: Final = 3
#: How long a run that ended waits for an absent broker to queue the rest of its chain.
CHAIN_WAIT_S: Final = 120.0

#: A stop can reach a worker process twice: a process manager that signals the whole group
#: (honcho, systemd) reaches it directly, and dramatiq's parent forwards its own. dramatiq
#: takes a second SIGTERM as "kill now", which cuts the runs short; one this soon after the
#: first is the same stop.
SAME_STOP_S: Final = 2.0


def _one_stop_per_group_signal() -> None:
    """Pass a SIGTERM on to dramatiq's handler unless it repeats one of SAME_STOP_S ago."""
    stop = signal.getsignal(signal.SIGTERM)
    if not callable(stop) or threading.current_thread() is not threading.main_thread():
        return
    first: float | None = None

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        nonlocal first
        now = time.monotonic()
        if first is not None and now - first < SAME_STOP_S:
            return
        first = first if first is not None else now
        stop(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


_one_stop_per_group_signal()  # dramatiq's worker process has set its handler before importing us
settings = Settings.from_env()
if not settings.redis_url:
    raise ConfigurationError("REDIS_URL is not set: workers need the broker")
broker = RedisBroker(url=settings.redis_url, heartbeat_timeout=HEARTBEAT_TIMEOUT_MS)
broker.add_middleware(CurrentMessage())
dramatiq.set_broker(broker)
_redis = redis.Redis.from_url(settings.redis_url)
_publish = Publisher(_redis)
_local = threading.local()
# Create or upgrade the local schema once per process, not in each worker thread's first run.
try:
    migrate(settings.database)
except LocalStoreError as exc:  # a damaged or unopenable file: each run says so (LocalStore.ready)
    log.error("%s", exc.plain)


def _engine() -> SyncEngine:
    """This thread's engine (its own SQLite connection and HTTP client)."""
    engine: SyncEngine | None = getattr(_local, "engine", None)
    if engine is None:
        store = LocalStore(settings.database, migrate_schema=False)  # migrated at start-up, below
        engine = SyncEngine(store, RemoteClient(settings.remote()))  # each run gives its own progress sink
        _local.engine = engine
    return engine


def _should_retry(retries: int, exc: BaseException) -> bool:
    if isinstance(exc, dramatiq.Retry):  # the entity was busy: expected, waited out, not logged as an error
        return retries < MAX_BUSY_RETRIES
    return retries < MAX_CRASH_RETRIES


def _hex_id(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-f]{32}", value) is not None


def _sync_message_ok(direction: object, policy: object, run_id: object) -> bool:
    """Whether a sync message has the shape ``worker.queue`` gives it (anything may be on the queue)."""
    return direction in values(Direction) and policy in values(Policy) and _hex_id(run_id)


def _import_chunk_ok(entity: object, rows: object, import_id: object) -> bool:
    """Whether an import chunk has the shape ``worker.imports`` gives it and belongs to an import
    a ``craftsync import`` started (its tally, for that entity, is in Redis)."""
    if entity not in ENTITIES or not _hex_id(import_id) or not isinstance(rows, list) or len(rows) > CHUNK_ROWS:
        return False
    if not all(isinstance(row, dict) and isinstance(row.get("id"), str)
               and all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in row.items())
               for row in rows):
        return False
    return _redis.hget(_tally_key(str(import_id)), "entity") == str(entity).encode()


def sync_entity(entity: str, *, direction: str, policy: str, run_id: str) -> None:
    """Run one sync of ``entity``, then queue the rest of its chain."""
    if not _sync_message_ok(direction, policy, run_id):
        log.warning("a %s sync message of an unexpected shape was dropped", entity)
        return
    try:
        with entity_lock(_redis, entity):
            claimed = take_queued(_redis, entity, run_id)
            if claimed is None:
                log.info("%s run %s was done by another message; nothing to do", entity, run_id)
                return
            then, requests = claimed
            result = _engine().sync(
                entity, SyncOptions(direction=direction, policy=policy), run_id=run_id,  # type: ignore[arg-type]
                progress=_progress_sink(requests),
            )
    except EntityBusy as exc:
        # Another run of this entity holds the lock: an expected wait, so dramatiq retries the
        # message later without logging a traceback (it logs any other exception as an error).
        raise dramatiq.Retry(str(exc)) from None
    if then:
        _continue_chain(then, direction=direction, policy=policy, requests=requests)
    log.info("%s %s: %s (pushed %d, pulled %d)", entity, direction, result.status, result.pushed, result.pulled)


def _progress_sink(requests: list[str]) -> Callable[[dict[str, Any]], None]:
    """Publish a run's events, naming the requests it serves. Events only tell of the run:
    while the broker is away the run goes on (its outcome is stored in the local file), and
    the events it could not publish are dropped, with one warning per run."""
    warned = False

    def publish(event: dict[str, Any]) -> None:
        nonlocal warned
        try:
            _publish({**event, "requests": requests})
        except redis.RedisError as exc:
            if not warned:
                warned = True
                log.warning("the broker is not answering (%s): the run goes on, its progress is not shown", exc)

    return publish


def _continue_chain(then: list[str], *, direction: str, policy: str, requests: list[str]) -> None:
    """Queue the rest of the chain, waiting up to CHAIN_WAIT_S for a broker that is away."""
    tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(redis.ConnectionError),
        wait=tenacity.wait_exponential(multiplier=0.2, max=5),
        stop=tenacity.stop_after_delay(CHAIN_WAIT_S),
        before_sleep=lambda state: log.warning("the broker is not answering: the sync of %s waits for it",
                                               ", ".join(then)),
        reraise=True,
    )(request_sync, broker, _redis, then, direction=direction, policy=policy, requests=requests)


def _declare(entity: str) -> dramatiq.Actor:
    def run(direction: str, policy: str, run_id: str) -> None:
        sync_entity(entity, direction=direction, policy=policy, run_id=run_id)

    run.__name__ = actor_name(entity)
    return dramatiq.actor(
        run,
        actor_name=actor_name(entity),
        queue_name=queue_name(entity),
        time_limit=TIME_LIMIT_MS,
        max_backoff=MAX_BACKOFF_MS,
        min_backoff=200,
        retry_when=_should_retry,
    )


ACTORS: Final = {entity: _declare(entity) for entity in ENTITIES}


@dramatiq.actor(actor_name=IMPORT_ACTOR, queue_name=IMPORT_QUEUE, time_limit=TIME_LIMIT_MS, max_retries=MAX_CRASH_RETRIES)
def import_chunk(entity: str, rows: list[dict[str, str | None]], import_id: str) -> None:
    """Push one chunk of a bulk import; any number of these run at once."""
    if not _import_chunk_ok(entity, rows, import_id):
        log.warning("an import chunk of an unexpected shape, or of no import started here, was dropped")
        return
    try:
        counts = _engine().import_records(entity, rows)
    except SyncError as exc:
        message = CurrentMessage.get_current_message()
        if message is not None and message.options.get("retries", 0) < MAX_CRASH_RETRIES:
            raise  # dramatiq tries the chunk again after a backoff
        record_failure(_redis, import_id, entity, str(exc))
        return
    record_chunk(_redis, import_id, entity, len(rows), counts)


# Everything imported so far lives as long as the process: keep it out of the collector's
# way, so that the collections after each page are cheap.
gc.freeze()
