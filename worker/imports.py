"""Bulk import: a CSV file cut into chunks on the import queue, pushed by any number of workers.

The command line reads and checks the file, gives every row its id (so that a chunk
delivered twice changes nothing), and queues one message per chunk. Each worker pushes its
chunk straight to the server and stores the answer locally (``SyncEngine.import_records``).
Chunks report into one Redis hash per import; the chunk that completes the count publishes
the ``completed`` event, so ``--wait`` and the UI follow an import like any other run.
"""

from __future__ import annotations

import csv
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import dramatiq
import redis

from craftsync.contract.records import data_fields, now_iso
from craftsync.contract.vocabulary import EventType
from craftsync.worker.errors import ConfigurationError
from craftsync.worker.events import channel

#: Rows per queued chunk: a server batch, and a few seconds of work for one worker.
CHUNK_ROWS: Final = 1000
IMPORT_QUEUE: Final = "craftsync-import"
IMPORT_ACTOR: Final = "import_chunk"
#: How long an import's tally stays in Redis after its last chunk.
TALLY_TTL_S: Final = 24 * 3600


def new_id() -> str:
    """A time-ordered id, as the local store's default makes them."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def read_csv(entity: str, path: Path) -> list[dict[str, Any]]:
    """The rows of ``path`` as records; ConfigurationError naming the problem if it cannot be used."""
    fields = set(data_fields(entity))
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            unknown = [name for name in reader.fieldnames or [] if name not in fields]
            if not reader.fieldnames:
                raise ConfigurationError(f"{path} has no header row")
            if unknown:
                raise ConfigurationError(f"{path}: columns that are not fields of {entity}: {', '.join(unknown)}")
            rows = [{k: (v if v != "" else None) for k, v in row.items()} for row in reader]
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigurationError(f"{path} is not a UTF-8 CSV file: {exc}") from exc
    for row in rows:
        row["id"] = row.get("id") or new_id()
    return rows


def chunks(rows: list[dict[str, Any]], size: int = CHUNK_ROWS) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def queue_import(broker: dramatiq.Broker, client: redis.Redis, entity: str, rows: list[dict[str, Any]]) -> str:
    """Queue every chunk of an import; returns the import's run id."""
    import_id = uuid.uuid4().hex
    key = _tally_key(import_id)
    client.hset(key, mapping={"entity": entity, "total": len(rows), "done": 0, "started": time.time()})
    client.expire(key, TALLY_TTL_S)
    _publish(client, EventType.STARTED, import_id, entity, {"total": len(rows), "done": 0})
    for chunk in chunks(rows):
        broker.enqueue(dramatiq.Message(
            queue_name=IMPORT_QUEUE, actor_name=IMPORT_ACTOR, args=(),
            kwargs={"entity": entity, "rows": chunk, "import_id": import_id}, options={},
        ))
    return import_id


def record_chunk(client: redis.Redis, import_id: str, entity: str, rows: int, counts: dict[str, int]) -> None:
    """Add one finished chunk to the import's tally and tell the listeners."""
    key = _tally_key(import_id)
    pipe = client.pipeline()
    pipe.hincrby(key, "done", rows)
    for name, value in counts.items():
        pipe.hincrby(key, name, value)
    pipe.hgetall(key)
    tally = {k.decode(): v.decode() for k, v in pipe.execute()[-1].items()}
    done, total = int(tally["done"]), int(tally["total"])
    _publish(client, EventType.COMPLETED if done >= total else EventType.PROGRESS, import_id, entity, tally)


def record_failure(client: redis.Redis, import_id: str, entity: str, error: str) -> None:
    """A chunk failed for good (its retries spent): the import has failed."""
    tally = {k.decode(): v.decode() for k, v in client.hgetall(_tally_key(import_id)).items()}
    _publish(client, EventType.FAILED, import_id, entity, tally, error=error)


def _publish(
    client: redis.Redis, kind: EventType, import_id: str, entity: str, tally: dict[str, Any], error: str | None = None
) -> None:
    done, total = int(tally.get("done", 0)), int(tally.get("total", 0))
    rejected = int(tally.get("rejected", 0))
    elapsed = max(time.time() - float(tally.get("started", time.time())), 1e-3)
    rate = done / elapsed
    if error is None and rejected and kind == EventType.COMPLETED:
        error = f"{rejected} rows rejected (see 'craftsync status')"
    client.publish(channel(client), json.dumps({
        "type": kind.value, "run_id": import_id, "entity": entity, "direction": "import",
        "done": done, "total": total, "pushed": int(tally.get("created", 0)), "pulled": 0,
        "conflicts": int(tally.get("conflict", 0)), "rejected": rejected, "rate": round(rate, 1),
        "eta_s": round((total - done) / rate, 1) if rate > 0 else 0,
        "error": error, "status": {EventType.COMPLETED: "completed", EventType.FAILED: "failed"}.get(kind, "running"),
        "ts": now_iso(),
    }))


def _tally_key(import_id: str) -> str:
    return f"craftsync:import:{import_id}"
