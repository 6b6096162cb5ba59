"""Supervision inside ``craftsync run``: the processes it started are watched and restarted.

The session hands the supervisor one ``Watched`` per process (the embedded broker, the demo
server, the workers' dramatiq parent with its worker processes): how to tell it is alive, how
to start it again, what to clear away after it died, and what to recover once it is back.
One small thread per process polls it; one that died is cleared away and started again at
once, and one that dies again within ``STABLE_S`` of a start is started again after a
growing pause, until ``MAX_ATTEMPTS`` such restarts in a row failed: then it is left down
and ``report`` says so in one sentence with what to do.

Why no supervisor library: the well-kept ones (supervisor, circus) are daemons of their own,
configured by files and driven over RPC, and would outlive or fight the desktop session; none
runs children from inside a Python process with hooks around each restart. So the watching is
psutil's (a process handle that tells a reused pid from ours, and a process's children) and
the backoff is tenacity's (exponential pauses, a stop after so many attempts), as the
worker's HTTP retries use it.

``RunLedger`` is what the session needs to recover runs after a restart: the sync requests it
queued and the runs in flight, read from the progress events.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import psutil
import redis
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from craftsync.contract.vocabulary import EventType
from craftsync.worker.events import channel

log = logging.getLogger(__name__)

#: How often each watched process is looked at.
POLL_S: Final = 0.25
#: A process that dies within this many seconds of a start died "at once".
STABLE_S: Final = 30.0
#: Restarts in a row that may die at once before the process is left down.
MAX_ATTEMPTS: Final = 5
#: Pause before the second restart in a row; it doubles with each one, up to MAX_BACKOFF_S.
BACKOFF_S: Final = 0.5
MAX_BACKOFF_S: Final = 8.0


class DiedAtOnce(Exception):
    """A restarted process did not start, or died within STABLE_S of its start."""


class _Stopping(Exception):
    """The session is stopping: restart nothing more."""


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M")


@dataclass
class Watched:
    """One process under supervision, and what to do around its restarts."""

    #: What the user calls it, to begin a sentence: "The sync service".
    label: str
    alive: Callable[[], bool]
    start: Callable[[], None]
    #: After it died, before it starts again: stop what is left of it, end what it left undone.
    clean_up: Callable[[], None] = lambda: None
    #: After it started again: re-queue what it lost.
    recover: Callable[[], None] = lambda: None
    #: Its name in the log ("broker", "workers", "demo server"), set by ``Supervisor.watch``.
    name: str = ""
    died_at: datetime | None = None
    restarted_at: datetime | None = None
    gave_up_at: datetime | None = None

    @property
    def restarting(self) -> bool:
        """It died and has not started again yet."""
        return self.died_at is not None and (self.restarted_at is None or self.restarted_at < self.died_at)


class Supervisor:
    """Watches processes and restarts those that die; ``report`` says what happened."""

    def __init__(self, on_change: Callable[[], None] = lambda: None) -> None:
        self.on_change = on_change
        self.watched: dict[str, Watched] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def watch(self, name: str, child: Watched) -> None:
        """Start watching ``child`` (already running) under ``name``."""
        child.name = name
        self.watched[name] = child
        thread = threading.Thread(target=self._run, args=(child,), name=f"supervise-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def revive(self, name: str) -> None:
        """Watch ``name`` again if it was left down and has now been started anew (new settings)."""
        child = self.watched.get(name)
        if child is not None and child.gave_up_at is not None and not self._stop.is_set():
            child.gave_up_at = child.died_at = child.restarted_at = None
            self.watch(name, child)
            self._changed()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop watching (and restarting); waits for a restart under way to give up."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def gave_up(self, *names: str) -> str | None:
        """The sentence for the first of ``names`` left down, or None."""
        for name in names:
            child = self.watched.get(name)
            if child is not None and child.gave_up_at is not None:
                return _gave_up_sentence(child)
        return None

    def report(self) -> dict[str, Any]:
        """What the user is told: {"state": ok | restarting | restarted | failed, "message", "at"}."""
        children = list(self.watched.values())
        for c in children:
            if c.gave_up_at is not None:
                return {"state": "failed", "message": _gave_up_sentence(c), "at": c.gave_up_at.isoformat()}
        for c in children:
            if c.restarting and c.died_at is not None:
                return {"state": "restarting", "at": c.died_at.isoformat(),
                        "message": f"{c.label} stopped unexpectedly at {_clock(c.died_at)} and is being restarted."}
        latest = max((c.restarted_at for c in children if c.restarted_at is not None), default=None)
        if latest is not None:
            c = next(c for c in children if c.restarted_at == latest)
            return {"state": "restarted", "at": latest.isoformat(),
                    "message": f"{c.label} stopped unexpectedly and restarted at {_clock(latest)}."}
        return {"state": "ok", "message": None, "at": None}

    # -- the watching thread -----------------------------------------------------------------

    def _run(self, child: Watched) -> None:
        while self._died(child):
            try:
                Retrying(
                    retry=retry_if_exception_type(DiedAtOnce),
                    stop=stop_after_attempt(MAX_ATTEMPTS),
                    wait=wait_exponential(multiplier=BACKOFF_S, max=MAX_BACKOFF_S),
                    sleep=self._stop.wait,
                    reraise=True,
                )(self._restart, child)
            except DiedAtOnce:
                child.gave_up_at = datetime.now().astimezone()
                log.error("the %s died %d times in a row right after starting; left down", child.name, MAX_ATTEMPTS)
                self._changed()
                return
            except _Stopping:
                return

    def _died(self, child: Watched, within: float | None = None) -> bool:
        """Wait until ``child`` is dead (True); False when stopping or ``within`` s passed first."""
        deadline = None if within is None else time.monotonic() + within
        while not self._stop.wait(POLL_S):
            if not _safely(child.alive, default=True):
                child.died_at = datetime.now().astimezone()
                log.warning("the %s stopped unexpectedly", child.name)
                self._changed()
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return False

    def _restart(self, child: Watched) -> None:
        if self._stop.is_set():  # the session stops: what is left is its to stop
            raise _Stopping
        _safely(child.clean_up)
        if self._stop.is_set():
            raise _Stopping
        try:
            child.start()
        except Exception as exc:
            log.warning("the %s could not be started again: %s", child.name, exc)
            raise DiedAtOnce from exc
        child.restarted_at = datetime.now().astimezone()
        log.warning("the %s restarted", child.name)
        self._changed()
        _safely(child.recover)
        if self._died(child, within=STABLE_S):
            raise DiedAtOnce
        if self._stop.is_set():
            raise _Stopping

    def _changed(self) -> None:
        _safely(self.on_change)


def _gave_up_sentence(child: Watched) -> str:
    return (f"{child.label} stopped {MAX_ATTEMPTS} times in a row right after starting and is not restarted "
            "again: close CraftSync and start it again, and if it stops again, restart the computer.")


def _safely(action: Callable[[], Any], default: Any = None) -> Any:
    """Run a hook of the session; an error in it is logged, never the end of the watching."""
    try:
        return action()
    except Exception:
        log.exception("supervision: %s failed", getattr(action, "__name__", action))
        return default


def family_alive(family: list[psutil.Process]) -> bool:
    """Whether every process of ``family`` still runs (a zombie has died)."""
    try:
        return all(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family)
    except psutil.NoSuchProcess:
        return False


# -- the runs a restart must recover -------------------------------------------------------------


@dataclass
class Request:
    """One sync request this session queued, and which of its entities' runs ended."""

    entities: list[str]
    direction: str
    policy: str
    ended: set[str] = field(default_factory=set)
    retries: int = 0


@dataclass
class InFlight:
    """A run a worker started and has not ended."""

    entity: str
    direction: str
    requests: list[str]


#: The key of a request queued without an id: its first run's id, until that run starts.
UNNAMED: Final = "run:"


class RunLedger:
    """The session's sync requests whose runs have not all ended, and the runs in flight,
    kept from the progress events (a thread follows them, and follows them again after the
    broker comes back).

    A request with an id (the page's) is followed by the ids its runs' events list. One
    without (the scheduler's) is known only by its first run's id (``UNNAMED`` + run id),
    until that run starts; the rest of its chain is then the worker's to queue.
    """

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.requests: dict[str, Request] = {}
        self.in_flight: dict[str, InFlight] = {}
        self._lock = threading.Lock()
        self._started: deque[str] = deque(maxlen=1000)  # runs lately started, for queued_run
        #: Retries of interrupted runs serving no request with an id, by entity, since one completed.
        self._unnamed_retries: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="run-ledger", daemon=True)

    def start(self) -> RunLedger:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def queued(self, request_id: str, entities: list[str], direction: str, policy: str) -> None:
        """Note a request before it is queued (so that none of its events comes first)."""
        with self._lock:
            self.requests[request_id] = Request(list(entities), direction, policy)

    def queued_run(self, run_id: str, entities: list[str], direction: str, policy: str) -> None:
        """Note a request without an id, just queued as (or joined to) run ``run_id``."""
        with self._lock:
            if run_id not in self._started:
                self.requests[UNNAMED + run_id] = Request(list(entities), direction, policy)

    def waiting(self) -> list[tuple[str, Request, list[str]]]:
        """(id, request, entities not ended) of each request none of whose runs is in flight:
        those whose message a lost queue or a dead worker may have taken with it."""
        with self._lock:
            busy = {rid for run in self.in_flight.values() for rid in run.requests}
            return [(rid, r, [e for e in r.entities if e not in r.ended])
                    for rid, r in self.requests.items() if rid not in busy]

    def orphaned(self, run_id: str) -> tuple[InFlight | None, list[str]]:
        """Forget the in-flight run ``run_id`` (its worker died); return it and what of its
        requests' entities is still to do after it (its chain), for the retry."""
        with self._lock:
            run = self.in_flight.pop(run_id, None)
            if run is None:
                return None, []
            rest: list[str] = []
            for rid in run.requests:
                request = self.requests.get(rid)
                if request is not None and run.entity in request.entities:
                    after = request.entities[request.entities.index(run.entity) + 1:]
                    rest += [e for e in after if e not in request.ended and e not in rest]
            return run, rest

    def count_retry(self, entity: str, requests: list[str]) -> int:
        """One more retry of an interrupted run of ``entity`` serving ``requests``; how many
        the most retried of them has had (for no request with an id: the entity's, since a
        run of it last completed)."""
        with self._lock:
            known = [self.requests[rid] for rid in requests if rid in self.requests]
            if not known:
                self._unnamed_retries[entity] += 1
                return self._unnamed_retries[entity]
            for request in known:
                request.retries += 1
            return max(r.retries for r in known)

    def forget(self, requests: list[str]) -> None:
        """Stop recovering ``requests``: they are not tried again."""
        with self._lock:
            for rid in requests:
                self.requests.pop(rid, None)

    def note(self, event: dict[str, Any]) -> None:
        """Keep one progress event."""
        kind, run_id, entity = event.get("type"), event.get("run_id"), event.get("entity")
        if not (isinstance(run_id, str) and isinstance(entity, str)) or event.get("direction") == "import":
            return
        requests = [r for r in event.get("requests") or [] if isinstance(r, str)]
        with self._lock:
            if kind == EventType.STARTED:
                self.in_flight[run_id] = InFlight(entity, str(event.get("direction")), requests)
                self._started.append(run_id)
                self.requests.pop(UNNAMED + run_id, None)
            elif kind in (EventType.COMPLETED, EventType.FAILED):
                self.in_flight.pop(run_id, None)
                if kind == EventType.COMPLETED:
                    self._unnamed_retries.pop(entity, None)
                for rid in requests:
                    request = self.requests.get(rid)
                    if request is None:
                        continue
                    request.ended.add(entity)
                    if set(request.entities) <= request.ended:
                        del self.requests[rid]

    def _follow(self) -> None:
        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        while not self._stop.is_set():
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(channel(client))
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message["type"] == "message":
                        try:
                            event = json.loads(message["data"])
                        except ValueError:
                            continue
                        if isinstance(event, dict):
                            self.note(event)
            except (redis.RedisError, OSError):
                self._stop.wait(0.5)  # the broker is down or restarting: follow it again when back
        client.close()
