"""What each ``craftsync`` command does once its arguments are parsed.

Each handler takes the parsed arguments and the settings and returns the exit code. They
raise ``UsageError`` (one line for the user) for everything a user can cause or meet; a
broker that cannot be reached leaves as the worker's ``BrokerUnavailable``, which says so in
one line too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import redis
import tenacity

from craftsync.contract.records import ENTITIES
from craftsync.contract.vocabulary import EventType, Resolution
from craftsync.shell.errors import UsageError
from craftsync.shell.preferences import PreferenceStore
from craftsync.worker.broker import (
    PING_TIMEOUT_S,
    broker_errors,
    broker_state,
    wait_for_broker,
    wait_until_answers,
)
from craftsync.worker.conflicts import open_conflicts, resolve
from craftsync.worker.engine import SyncEngine, SyncOptions
from craftsync.worker.errors import RemoteError, SyncError
from craftsync.worker.events import channel, follow
from craftsync.worker.imports import CHUNK_ROWS, queue_import, read_csv
from craftsync.worker.queue import request_sync, sync_order
from craftsync.worker.remote import RemoteClient, RemoteSettings
from craftsync.worker.settings import Settings, data_dir, read_runtime
from craftsync.worker.store import LocalStore

#: Exit codes of ``craftsync sync --wait`` / ``--inline`` (spec §3).
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_CONFLICTS: Final = 3
#: How long ``--wait`` waits for the next event before deciding no worker is listening.
WAIT_SILENCE_S: Final = 60.0
#: The events that end a run.
_ENDED: Final = (EventType.COMPLETED, EventType.FAILED)


# -- sync ----------------------------------------------------------------------------------


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    entities = sync_order(args.entities or [])
    saved = PreferenceStore(data_dir()).load()  # what the user chose in the app, unless a flag says otherwise
    options = SyncOptions(direction=args.direction or saved.default_direction,
                          policy=args.conflicts or saved.conflict_policy)
    if args.inline:
        results = _sync_inline(settings, entities, options, quiet=args.json)
    else:
        results = _sync_queued(settings, entities, options, wait=args.wait, quiet=args.json)
        if results is None:
            return EXIT_OK
    code = outcome_code(results)
    if args.json:
        print(json.dumps({"status": _STATUS_WORDS[code], "runs": results}))
    return code


_STATUS_WORDS = {EXIT_OK: "completed", EXIT_FAILED: "failed", EXIT_CONFLICTS: "conflicts"}


def outcome_code(results: list[dict[str, Any]]) -> int:
    """1 when a run failed, else 3 when one ended with unresolved conflicts, else 0."""
    statuses = {r.get("status") for r in results}
    if "failed" in statuses or not results:
        return EXIT_FAILED
    return EXIT_CONFLICTS if "conflicts" in statuses else EXIT_OK


def _sync_inline(settings: Settings, entities: list[str], options: SyncOptions, *, quiet: bool) -> list[dict[str, Any]]:
    with LocalStore(settings.database) as store, RemoteClient(settings.remote()) as remote:
        engine = SyncEngine(store, remote)
        progress = None if quiet else _print_progress
        return [engine.sync(entity, options, progress=progress).as_dict() for entity in entities]


def _sync_queued(
    settings: Settings, entities: list[str], options: SyncOptions, *, wait: bool, quiet: bool
) -> list[dict[str, Any]] | None:
    from dramatiq.brokers.redis import RedisBroker

    url = _broker_url(settings)
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub()
    request_id = uuid.uuid4().hex  # every event of the runs serving this request names it
    with broker_errors(url):
        pubsub.subscribe(channel(client))  # before queueing, so that no event is missed
        run_id = request_sync(
            RedisBroker(url=url), client, entities, direction=options.direction, policy=options.policy,
            requests=[request_id],
        )
    if not wait:
        print(json.dumps({"queued": run_id, "entities": entities}) if quiet else f"queued: {', '.join(entities)} ({run_id})")
        return None
    try:
        with broker_errors(url):  # the broker may go away while we follow the runs: one line, no traceback
            return _wait_for_runs(pubsub, entities, request_id, quiet=quiet)
    finally:
        pubsub.close()


def _wait_for_runs(
    pubsub: redis.client.PubSub, entities: list[str], request_id: str, *, quiet: bool
) -> list[dict[str, Any]]:
    """Follow the runs serving ``request_id`` until each entity's has ended; one result each."""
    started: dict[str, str] = {}
    results: dict[str, dict[str, Any]] = {}

    def ours(event: dict[str, Any]) -> bool:
        return event.get("entity") in entities and request_id in (event.get("requests") or [])

    for event in follow(pubsub, timeout_s=WAIT_SILENCE_S, match=ours):
        entity, run = event.get("entity"), event.get("run_id")
        if entity in results or event.get("direction") == "import":
            continue
        if event["type"] == EventType.STARTED:
            started.setdefault(entity, run)
        elif started.get(entity) == run:
            if not quiet:
                _print_progress(event)
            if event["type"] in _ENDED:
                results[entity] = event
                if len(results) == len(entities):
                    break
    missing = [e for e in entities if e not in results]
    if missing:
        raise UsageError(
            f"no progress from the workers for {WAIT_SILENCE_S:.0f} s ({', '.join(missing)} not finished): "
            "is 'craftsync worker' running? ('--inline' syncs without workers)"
        )
    return [results[e] for e in entities]


def _print_progress(event: dict[str, Any]) -> None:
    kind = event["type"]
    line = f"{event['entity']:<9} {event['direction']:<4} {kind:<9} {event['done']}/{event['total']}"
    if kind == EventType.PROGRESS:
        line += f"  {event['rate']:.0f}/s, {event['eta_s']:.0f} s left"
    elif kind in _ENDED:
        line += f"  pushed {event['pushed']}, pulled {event['pulled']}, conflicts {event['conflicts']}"
        if event.get("status") == "conflicts":
            line += " (open conflicts: see 'craftsync conflicts')"
        if event.get("error"):
            line += f"  error: {event['error']}"
    print(line, file=sys.stderr, flush=True)


def _broker_url(settings: Settings) -> str:
    if not settings.redis_url:
        raise UsageError("no broker: set REDIS_URL, or start 'craftsync run'; or sync in this process with --inline")
    return settings.redis_url


# -- import ------------------------------------------------------------------------------


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from dramatiq.brokers.redis import RedisBroker

    rows = read_csv(args.entity, Path(args.file))
    if not rows:
        raise UsageError(f"{args.file} holds no rows")
    url = _broker_url(settings)
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub()
    with broker_errors(url):
        pubsub.subscribe(channel(client))
        import_id = queue_import(RedisBroker(url=url), client, args.entity, rows)
    chunks = -(-len(rows) // CHUNK_ROWS)
    if not args.wait:
        print(f"queued: {len(rows)} {args.entity} in {chunks} chunks ({import_id})")
        return EXIT_OK
    try:
        for event in follow(pubsub, timeout_s=WAIT_SILENCE_S, match=lambda e: e.get("run_id") == import_id):
            _print_progress(event)
            if event["type"] in _ENDED:
                return EXIT_FAILED if event["type"] == EventType.FAILED else EXIT_OK
    finally:
        pubsub.close()
    raise UsageError(f"no progress from the workers for {WAIT_SILENCE_S:.0f} s: is 'craftsync worker' running?")


# -- worker --------------------------------------------------------------------------------


#: How long ``craftsync worker`` waits at start-up for the server to answer before it starts
#: anyway (its runs then fail, each saying why, until the server answers): long enough for
#: a server started beside it to migrate a new database (a second or two), short enough that
#: a desktop whose server is down sees its first sync fail with the reason within seconds.
SERVER_WAIT_S: Final = 10.0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    remote = settings.remote()  # fail now, in one line, rather than in every worker thread
    wait_for_broker(_broker_url(settings), say=_say_waiting)  # the Procfile starts it beside us
    _wait_for_server(remote)
    os.environ.update(settings.to_env())
    # An idle worker polls Redis every 100 ms instead of every second (dramatiq reads this
    # in each worker process), so that a sync request is picked up at once.
    os.environ.setdefault("dramatiq_worker_timeout", "100")
    argv = ["craftsync.worker.actors", "--processes", str(args.processes), "--threads", str(args.threads)]
    return int(dramatiq_main(make_argument_parser().parse_args(argv)) or 0)


def _wait_for_server(remote: RemoteSettings) -> None:
    """Wait up to SERVER_WAIT_S for the server's health check to answer, then go on either way."""
    def not_answering(exc: BaseException) -> str | None:
        return "not answering yet" if isinstance(exc, RemoteError) and not exc.needs_user else None

    quick = replace(remote, timeout_s=PING_TIMEOUT_S, connect_timeout_s=PING_TIMEOUT_S, max_attempts=1)
    with RemoteClient(quick) as client:
        try:
            wait_until_answers(client.health, what=f"the server at {remote.base_url}", passing=not_answering,
                               say=_say_waiting, stop=tenacity.stop_after_delay(SERVER_WAIT_S))
        except RemoteError as exc:
            _say_waiting(f"{exc.plain} Starting anyway: syncs fail, each saying why, until it answers.")


def _say_waiting(line: str) -> None:
    print(f"craftsync: {line}", file=sys.stderr, flush=True)


# -- status and conflicts ------------------------------------------------------------------


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    with LocalStore(settings.database) as store:
        report = {
            "database": str(settings.database),
            "database_problem": store.write_problem(),  # read-only, locked by another program
            "connection": _connection(settings),
            "broker": broker_state(settings.redis_url),
            "entities": {entity: _entity_status(store, entity) for entity in ENTITIES},
            "open_conflicts": len(open_conflicts(store)),
            "service": _service(),
        }
    if args.json:
        print(json.dumps(report))
        return EXIT_OK
    connection = report["connection"]
    print(f"remote:    {connection['state']} {connection.get('url') or ''} {connection.get('detail') or ''}".rstrip())
    if report["service"]["message"]:
        print(f"service:   {report['service']['message']}")
    broker = report["broker"]
    if broker["state"] == "unreachable":  # shown while the outage lasts
        print(f"broker:    unreachable {broker['url']} {broker['detail']}")
    if report["database_problem"]:
        print(f"database:  {report['database_problem']}")
    for entity, info in report["entities"].items():
        last = info["last_run"]
        when = f"last run {last['status']} at {last['finished_at'] or last['started_at']}" if last else "never synced"
        if last and last["status"] == "failed" and last["error"]:
            when += f": {last['error']}"
        print(f"{entity:<10} pending {info['pending']:>6}  conflicts {info['conflict']:>4}  rejected {info['rejected']:>4}  {when}")
    print(f"open conflicts: {report['open_conflicts']}")
    return EXIT_OK


def _service() -> dict[str, Any]:
    """What the running ``craftsync run`` says of its sync service (its runtime file): whether
    a process of it restarted, or is left down; "not running" when no session runs."""
    running = read_runtime()
    if not running:
        return {"state": "not_running", "message": None, "at": None}
    return running.get("service") or {"state": "ok", "message": None, "at": None}


def _entity_status(store: LocalStore, entity: str) -> dict[str, Any]:
    last = store.runs.last(entity)
    shown = {name: last[name] for name in _LAST_RUN_SHOWN} if last else None
    return {**store.counts(entity), "last_run": shown}


#: What ``craftsync status`` tells of an entity's last run.
_LAST_RUN_SHOWN: Final = ("run_id", "status", "started_at", "finished_at", "pushed", "pulled", "conflicts",
                          "rejected", "error")


def _connection(settings: Settings) -> dict[str, Any]:
    """One health check of the remote API, as the app's connection monitor does it."""
    from craftsync.shell.scheduler import ConnectionMonitor

    try:
        remote_settings = settings.remote()
    except SyncError as exc:
        return {"state": "unconfigured", "detail": str(exc)}
    return {**ConnectionMonitor(lambda: remote_settings).check(), "url": remote_settings.base_url}


def cmd_conflicts(args: argparse.Namespace, settings: Settings) -> int:
    with LocalStore(settings.database) as store:
        if args.action == "resolve":
            return _resolve(args, store)
        conflicts = open_conflicts(store)
    if args.json:
        print(json.dumps([c.as_dict() for c in conflicts]))
        return EXIT_OK
    if not conflicts:
        print("no open conflicts")
    for c in conflicts:
        print(f"#{c.id} {c.entity} {c.record_id}  fields: {', '.join(c.fields)}")
        for name in c.fields:
            local = (c.local or {}).get(name)
            print(f"    {name}: local {local!r}  remote {c.remote.get(name)!r}")
    return EXIT_OK


def _resolve(args: argparse.Namespace, store: LocalStore) -> int:
    if args.id is None:
        raise UsageError("say which conflict: craftsync conflicts resolve ID --use local|remote|merged")
    if args.use is None:
        raise UsageError("say which version to keep: --use local, --use remote or --use merged --data JSON")
    data = None
    if args.data is not None:
        try:
            data = json.loads(args.data)
        except ValueError as exc:
            raise UsageError(f"--data is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise UsageError("--data must be a JSON object of field values")
    if args.use == Resolution.MERGED and data is None:
        raise UsageError("--use merged needs --data with the chosen field values")
    record = resolve(store, args.id, args.use, data)
    print(f"conflict #{args.id} settled with the {args.use} version; it is pushed on the next sync")
    if args.json:
        print(json.dumps(record))
    return EXIT_OK
