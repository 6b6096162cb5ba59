"""Soak: eight desktops create, edit and delete customers for minutes against one
``craftsync server`` on PostgreSQL while processes are killed and requests broken on a
schedule; then every desktop syncs until quiet and the outcome is checked (issue 10, item 5).

    .venv/bin/python tests/bench/soak.py                       # 5 minutes
    .venv/bin/python tests/bench/soak.py --minutes 1 --json soak.json --doc docs/RELIABILITY.md

What runs, all real processes on loopback:

- a ``redis-server`` of its own (``tests.support.faults.RestartableRedis``, with persistence),
  one database per desktop: a worker serves one local file and the queue's names are fixed,
  so each desktop has its own database and its own ``craftsync worker`` (one process, two
  threads): eight worker processes in all;
- ``craftsync server`` on a fresh PostgreSQL database, behind a ``FaultyProxy``
  (``tests/support/proxy.py``) that the workers talk to;
- eight desktops: SQLite files whose host app (a thread each, plain SQL) creates, edits,
  soft-deletes and hard-deletes customers, asks for a sync on the queue every few seconds
  (policy ``manual``), and settles each conflict it is shown with ``craftsync conflicts
  resolve``, as a careful user would: the server's or its own values of the fields in
  conflict, keeping every other edit of both sides (``--use merged``), and the server's side
  for a row the host app removed (hard-deleted); ``--settle whole`` takes one side's whole
  record instead (``--use remote`` or ``--use local``), ``--settle any`` keeps either side of
  removed rows too. Both reproduce known problems (docs/RELIABILITY.md).

Faults on a schedule while the desktops work: a desktop's worker SIGKILLed (and started
again a second later, as a process manager does), Redis killed (it comes back empty) or shut
down and started again (with its data), the server SIGKILLed or shut down and started again,
and a tenth of the requests broken by the proxy.

Then the faults stop, and every desktop syncs until a round in which nothing moves. Checks,
each read raw from the databases:

- converged: every desktop holds exactly the server's live records, nothing left pending;
- nothing lost: every customer a desktop created is on the server, live unless some desktop
  deleted it, and each field it holds is the last value some desktop wrote to it (the one
  value, when only one desktop wrote the field);
- no invented conflicts: each conflict kept is on a field two desktops both edited, or a
  delete against an edit by another desktop (a conflict of a desktop with its own earlier
  value, left by a push whose answer it never wrote, is a known problem: counted and
  reported apart, and failed on with ``--strict``);
- memory flat: each worker and server process grows by less than MEMORY_LIMIT_MIB from its
  size after warming up (psutil RSS);
- no run is left "running", and every worker is alive at the end.

Exits 1 when a check fails, and prints a summary; ``--json`` writes the figures and
``--doc`` writes the "Soak" section of docs/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import redis  # noqa: E402

from craftsync.contract.records import ENTITIES  # noqa: E402
from craftsync.worker.queue import request_sync  # noqa: E402
from tests.bench.bench_common import API_KEY, machine_note, postgres_database, write_doc  # noqa: E402
from tests.support.device import Device  # noqa: E402
from tests.support.faults import RestartableRedis  # noqa: E402
from tests.support.process import RedisDB, Service, clean_env, free_port, start_server, wait_until  # noqa: E402
from tests.support.proxy import FaultyProxy  # noqa: E402
from tests.support.sync import central_rows  # noqa: E402
from tests.support.worker import Central, heartbeats, queue_broker, start_worker  # noqa: E402

DESKTOPS: Final = 8
#: Desktops whose worker is killed; the others' workers live through the soak, so that
#: their memory is measured over all of it.
KILLED_DESKTOPS: Final = 4
#: The schedule: (first at, then every) seconds into the soak, and until which share of it, per
#: fault. The server is restarted in the first half only, so that its last process lives
#: long enough for its memory to be measured.
SCHEDULE: Final = {"worker killed": (10, 20, 1.0), "server restarted": (10, 20, 0.55),
                   "broker restarted": (25, 30, 1.0)}
BREAK_RATE: Final = 0.10
#: A killed worker is started again this long after, as a process manager would.
WORKER_RESTART_S: Final = 1.0
#: The host app's pace: a pause between two writes, and how often it asks for a sync.
WRITE_PAUSE_S: Final = (0.2, 0.8)
SYNC_EVERY_S: Final = 3.0
CONFLICTS_EVERY_S: Final = 2.0
#: The host app's writes, by weight.
WRITES: Final = {"create": 25, "edit": 55, "soft delete": 12, "hard delete": 8}
#: The fields a host app edits (each edit writes one, with a value no other write uses).
EDITED: Final = ("name", "email", "phone", "city", "notes")
#: The settling after the faults: rounds of one sync per desktop, each run waited for.
SETTLE_ROUNDS: Final = 12
RUN_WAIT_S: Final = 90
#: Memory: a process is measured from its size WARMUP_S after it was first seen, if it then
#: lives MIN_SPAN_S more; it may grow by MEMORY_LIMIT_MIB.
SAMPLE_EVERY_S: Final = 2.0
WARMUP_S: Final = 15.0
MIN_SPAN_S: Final = 20.0
MEMORY_LIMIT_MIB: Final = 30.0
MIB: Final = 1024 * 1024
SECTION: Final = "## Soak"


def log(message: str) -> None:
    print(f"[soak {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- what was written


@dataclass
class Journal:
    """What every host app wrote, for the checks: by record, field and desktop."""

    created: dict[str, int] = field(default_factory=dict)  # record -> desktop
    last: dict[tuple[str, str], dict[int, Any]] = field(default_factory=lambda: defaultdict(dict))
    edited: dict[tuple[str, str], set[int]] = field(default_factory=lambda: defaultdict(set))
    deleted: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    origin: dict[Any, int] = field(default_factory=dict)  # every value written (each is unique) -> desktop
    writes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, desktop: int, record_id: str, values: dict[str, Any]) -> None:
        with self.lock:
            self.writes["create"] += 1
            self.created[record_id] = desktop
            for name, value in values.items():
                self.last[(record_id, name)][desktop] = value
                self.origin[value] = desktop

    def edit(self, desktop: int, record_id: str, name: str, value: Any) -> None:
        with self.lock:
            self.writes["edit"] += 1
            self.last[(record_id, name)][desktop] = value
            self.edited[(record_id, name)].add(desktop)
            self.origin[value] = desktop

    def delete(self, desktop: int, record_id: str, how: str) -> None:
        with self.lock:
            self.writes[how] += 1
            self.deleted[record_id].add(desktop)

    def give_up(self, desktop: int, record_id: str, fields: list[str], remote: dict[str, Any]) -> None:
        """The desktop took the server's side of a conflict: the server's values of the fields
        in conflict replace its own last writes of them (its edits of the others are kept)."""
        with self.lock:
            for name in fields:
                if desktop in self.last.get((record_id, name), {}):
                    self.last[(record_id, name)][desktop] = remote.get(name)

    def edited_by(self, record_id: str) -> set[int]:
        return {d for name in EDITED for d in self.edited.get((record_id, name), set())}


# --------------------------------------------------------------------------- memory


@dataclass
class Sampled:
    label: str
    seen: float
    samples: list[tuple[float, int]] = field(default_factory=list)

    def growth(self) -> dict[str, Any] | None:
        """Size after warming up, last size and growth (MiB), or None when it lived too briefly."""
        warm = [(t, rss) for t, rss in self.samples if t >= self.seen + WARMUP_S]
        if not warm or warm[-1][0] - warm[0][0] < MIN_SPAN_S:
            return None
        (t0, first), (t1, last) = warm[0], warm[-1]
        return {"process": self.label, "baseline_mib": round(first / MIB, 1), "last_mib": round(last / MIB, 1),
                "growth_mib": round((last - first) / MIB, 1), "span_s": round(t1 - t0)}


class MemoryWatch:
    """RSS of every process of the watched services (each root and its children), sampled by a thread."""

    def __init__(self) -> None:
        self.watched: dict[str, Service] = {}
        self.processes: dict[int, Sampled] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="memory", daemon=True)

    def watch(self, label: str, service: Service) -> None:
        self.watched[label] = service

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            now = time.monotonic()
            for label, service in list(self.watched.items()):
                try:
                    root = psutil.Process(service.pid)
                    family = [root, *root.children(recursive=True)]
                except psutil.Error:
                    continue
                for process in family:
                    try:
                        rss = process.memory_info().rss
                        role = "" if process.pid == root.pid else " child"
                    except psutil.Error:
                        continue
                    sampled = self.processes.setdefault(
                        process.pid, Sampled(f"{label}{role} (pid {process.pid})", now))
                    sampled.samples.append((now, rss))

    def report(self) -> list[dict[str, Any]]:
        return [g for sampled in self.processes.values() if (g := sampled.growth()) is not None]


# --------------------------------------------------------------------------- a desktop


class Desktop:
    """One desktop: its local file and host app (a thread), its Redis database and worker."""

    def __init__(self, index: int, work: Path, central: Central, redis_url: str, journal: Journal,
                 memory: MemoryWatch, seed: int, settle: str) -> None:
        self.index, self.journal, self.memory, self.settle = index, journal, memory, settle
        tmp = work / f"desktop-{index}"
        tmp.mkdir()
        url = redis_url.rsplit("/", 1)[0] + f"/{index}"
        self.device = Device.with_workers(tmp, central, RedisDB(index, url, redis.Redis.from_url(url)))
        self.device.host.close()  # the host app's thread writes, the checks read after it ends
        self.device.host = sqlite3.connect(self.device.path, isolation_level=None, timeout=30, check_same_thread=False)
        self.device.host.row_factory = sqlite3.Row
        self.broker = queue_broker(url)
        self.rng = random.Random(seed * 100 + index)
        self.worker: Service | None = None
        self.workers_started = 0
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []
        self.thread: threading.Thread | None = None

    # -- the worker ----------------------------------------------------------------------

    def start_worker(self) -> None:
        self.workers_started += 1
        self.worker = start_worker(self.device.env(), log=self.device.tmp / f"worker-{self.workers_started}.log",
                                   cwd=self.device.home, processes=1, threads=2)
        self.memory.watch(f"desktop {self.index} worker #{self.workers_started}", self.worker)

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.kill()

    def consuming(self) -> bool:
        return bool(heartbeats(self.device.redis.client))

    # -- the host app --------------------------------------------------------------------

    def value(self, name: str) -> str:
        token = f"d{self.index}x{self.rng.randrange(10**9):09d}"
        return f"{token}@example.com" if name == "email" else f"{name} {token}"

    def write(self) -> None:
        """One write of the host app, plain SQL on its own connection."""
        how = self.rng.choices(list(WRITES), weights=list(WRITES.values()))[0]
        picked = self.device.sql("SELECT id FROM customers WHERE deleted_at IS NULL ORDER BY random() LIMIT 1")
        if how == "create" or not picked:
            values = {name: self.value(name) for name in ("name", "email", "city", "notes")}
            row = self.device.sql("INSERT INTO customers (name, email, city, notes) VALUES (?, ?, ?, ?) RETURNING id",
                                  *values.values())
            self.journal.create(self.index, row[0][0], values)
            return
        record_id = picked[0][0]
        stamp = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
        if how == "edit":
            name = self.rng.choice(EDITED)
            value = self.value(name)
            changed = self.device.host.execute(
                f"UPDATE customers SET {name} = ?, updated_at = {stamp} WHERE id = ? AND deleted_at IS NULL",
                (value, record_id)).rowcount
            if changed:
                self.journal.edit(self.index, record_id, name, value)
        else:
            statement = (f"UPDATE customers SET deleted_at = {stamp}, updated_at = {stamp} "
                         "WHERE id = ? AND deleted_at IS NULL" if how == "soft delete"
                         else "DELETE FROM customers WHERE id = ?")
            if self.device.host.execute(statement, (record_id,)).rowcount:
                self.journal.delete(self.index, record_id, how)

    def request_sync(self) -> str | None:
        """Ask for a sync of customers on the queue, as the page does; None while the broker is away."""
        try:
            run_id = request_sync(self.broker, self.device.redis.client, ["customers"], direction="both",
                                  policy="manual")
        except redis.RedisError:
            self.counts["sync requests refused (broker away)"] += 1
            return None
        self.counts["sync requests"] += 1
        return run_id

    def open_conflicts(self) -> list[int]:
        return [row[0] for row in self.device.sql("SELECT id FROM sync_conflicts WHERE resolved = 0 ORDER BY id")]

    def merged(self, record_id: str, fields: list[str], local: dict[str, Any], base: dict[str, Any] | None,
               use: str) -> dict[str, Any]:
        """The ``--data`` of a careful merge: this desktop's own edits (its values now against
        the agreed record) of the fields not in conflict, and with ``mine`` of those in
        conflict too, its delete or undelete always; every other field takes the server's
        value. (A delete against an edit lists the other side's edited fields too: keeping
        the delete keeps the server's values of those, not this desktop's older ones.)"""
        rows = self.device.sql("SELECT * FROM customers WHERE id = ?", record_id)
        now = dict(rows[0]) if rows else local  # a hard-deleted row: its tombstone

        def own(name: str) -> bool:
            return base is None or now.get(name) != base.get(name)

        data = {name: now.get(name) for name in (*EDITED, "deleted_at") if name not in fields and base and own(name)}
        if use == "mine":
            data.update({name: now.get(name) for name in fields if name == "deleted_at" or own(name)})
        return data

    def settle_conflicts(self) -> None:
        """Settle each open conflict with ``craftsync conflicts resolve``, taking the server's
        side or this desktop's at random, as ``--settle`` says."""
        for conflict_id, record_id, fields_json, local, remote, base in self.device.sql(
                "SELECT id, record_id, fields, local_data, remote_data, base_data FROM sync_conflicts "
                "WHERE resolved = 0 ORDER BY id"):
            fields = json.loads(fields_json)
            use = self.rng.choice(("theirs", "mine"))
            removed = not self.device.sql("SELECT 1 FROM customers WHERE id = ?", record_id)
            if removed and self.settle == "fields":
                use = "theirs"  # keeping a removed row's side keeps its old values: a known problem
            if self.settle == "whole":
                how = ["--use", "remote" if use == "theirs" else "local"]
            else:
                data = self.merged(record_id, fields, json.loads(local or "{}"), json.loads(base) if base else None, use)
                how = ["--use", "merged", "--data", json.dumps(data)]
            done = self.device.cli("conflicts", "resolve", str(conflict_id), *how, timeout=120)
            if done.returncode == 0:
                self.counts[f"conflicts settled: {use}"] += 1
                if use == "theirs":
                    self.journal.give_up(self.index, record_id, fields, json.loads(remote))
            elif conflict_id not in self.open_conflicts():
                self.counts["conflicts that closed by themselves first"] += 1
            else:
                self.errors.append(f"desktop {self.index}: craftsync conflicts resolve {conflict_id} exited "
                                   f"{done.returncode}: {done.stderr.strip()[-300:]}")

    def drive(self, until: float) -> None:
        """The host app at work until ``until`` (monotonic)."""
        next_sync = time.monotonic() + self.rng.uniform(0, SYNC_EVERY_S)
        next_conflicts = time.monotonic() + CONFLICTS_EVERY_S
        while time.monotonic() < until:
            try:
                self.write()
            except sqlite3.OperationalError as exc:  # the file busy past the timeout: the host app tries later
                self.counts[f"host writes refused: {exc}"] += 1
            now = time.monotonic()
            if now >= next_sync:
                self.request_sync()
                next_sync = now + self.rng.uniform(0.5, 1.5) * SYNC_EVERY_S
            if now >= next_conflicts:
                self.settle_conflicts()
                next_conflicts = now + CONFLICTS_EVERY_S
            time.sleep(self.rng.uniform(*WRITE_PAUSE_S))  # the host app's pace, not a wait for anything

    def start_driving(self, until: float) -> None:
        def run() -> None:
            try:
                self.drive(until)
            except Exception as exc:  # noqa: BLE001 - any failure of the harness is reported as one
                self.errors.append(f"desktop {self.index}: the host app stopped: {type(exc).__name__}: {exc}")

        self.thread = threading.Thread(target=run, name=f"desktop-{self.index}", daemon=True)
        self.thread.start()

    def wait_run(self, run_id: str) -> dict[str, Any] | None:
        """The run's row once it ended, or None when it did not end within RUN_WAIT_S."""
        def ended() -> dict[str, Any] | None:
            row = self.device.run(run_id)
            return row if row and row["status"] != "running" else None

        def give_up(message: str) -> Any:
            raise TimeoutError(message)

        try:
            row: dict[str, Any] = wait_until(ended, timeout=RUN_WAIT_S, interval=0.1, what=f"run {run_id}",
                                             fail=give_up)
        except TimeoutError:
            return None
        return row

    def close(self) -> None:
        if self.worker is not None and self.worker.alive():
            self.worker.kill()
        self.device.close()
        self.device.redis.client.close()
        self.broker.close()


# --------------------------------------------------------------------------- the soak


class Soak:
    """The services, the desktops and the schedule of one soak."""

    def __init__(self, args: argparse.Namespace, work: Path, database_url: str) -> None:
        self.args, self.work = args, work
        self.memory = MemoryWatch()
        self.journal = Journal()
        self.faults: Counter[str] = Counter()
        self.server_starts = 0
        self.redis_dir = work / "redis"
        self.redis_dir.mkdir()
        self.redis = RestartableRedis(self.redis_dir, persist=True)
        self.server_port = free_port()
        self.server_home = work / "server-home"
        self.server_env = clean_env(self.server_home, DATABASE_URL=database_url, API_KEYS=API_KEY,
                                    RATE_LIMIT="1000000/minute")
        self.database_url = database_url
        self.server: Service | None = None
        # A stream of its own: the first hundred requests of seed 1 would meet no dropped connection.
        self.proxy = FaultyProxy(f"http://127.0.0.1:{self.server_port}", rate=0.0, seed=args.seed * 7919)
        self.desktops: list[Desktop] = []

    def _start_server(self) -> Service:
        service = start_server(self.server_env, port=self.server_port, log=self.work / "server.log",
                               cwd=self.server_home, timeout=60)
        self.server_starts += 1
        self.memory.watch(f"server #{self.server_starts}", service)
        return service

    # -- faults ----------------------------------------------------------------------------

    def schedule(self, seconds: float) -> list[tuple[float, str]]:
        plan = [(float(at), kind) for kind, (first, every, until) in SCHEDULE.items()
                for at in range(first, int(seconds * until), every)]
        return sorted(plan)

    def inject(self, kind: str, count: int) -> None:
        """The ``count``-th fault of ``kind`` (from 0)."""
        if kind == "worker killed":
            desktop = self.desktops[count % KILLED_DESKTOPS]
            desktop.kill_worker()
            time.sleep(WORKER_RESTART_S)  # a process manager's restart delay
            desktop.start_worker()
            what = f"desktop {desktop.index}'s worker SIGKILLed and started again"
        elif kind == "broker restarted":
            crash = count % 2 == 0
            if crash:
                self.redis.kill()
                (self.redis_dir / "dump.rdb").unlink(missing_ok=True)  # a crash loses what it held
            else:
                self.redis.stop()  # it saves its data, and loads it as it starts
            self.redis.start()
            what = "Redis killed (back empty)" if crash else "Redis shut down and started with its data"
            self.faults["broker killed" if crash else "broker shut down"] += 1
        else:
            crash = count % 2 == 0
            assert self.server is not None
            self.server.kill() if crash else self.server.stop()
            self.faults["server killed" if crash else "server shut down"] += 1
            self.server = self.central.service = self._start_server()
            what = "server SIGKILLed and started again" if crash else "server shut down and started again"
        self.faults[kind] += 1
        log(what)

    def run_faults(self, started: float, seconds: float) -> None:
        done: Counter[str] = Counter()
        for at, kind in self.schedule(seconds):
            pause = started + at - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # the schedule itself
            self.inject(kind, done[kind])
            done[kind] += 1

    # -- phases ----------------------------------------------------------------------------

    def start(self) -> None:
        log("starting redis-server, craftsync server on PostgreSQL, the proxy and the workers")
        self.redis.start()
        self.server = self._start_server()
        self.proxy.start()
        self.central = Central(f"{self.proxy.url}/api", API_KEY, self.server, self.database_url)
        for i in range(DESKTOPS):
            self.desktops.append(Desktop(i, self.work, self.central, self.redis.url, self.journal, self.memory,
                                         self.args.seed, self.args.settle))
            self.desktops[-1].start_worker()
        wait_until(lambda: all(d.consuming() for d in self.desktops), timeout=120, interval=0.2,
                   what="every desktop's worker to consume")
        self.memory.start()

    def soak(self) -> float:
        seconds = self.args.minutes * 60
        log(f"soaking for {seconds:g} s: {DESKTOPS} desktops, faults on a schedule, "
            f"{BREAK_RATE:.0%} of requests broken")
        self.proxy.rate = BREAK_RATE
        started = time.monotonic()
        for desktop in self.desktops:
            desktop.start_driving(started + seconds)
        self.run_faults(started, seconds)
        for desktop in self.desktops:
            assert desktop.thread is not None
            desktop.thread.join()
        self.proxy.rate = 0.0
        return time.monotonic() - started

    def settle(self) -> dict[str, Any]:
        """Sync every desktop, round after round, until a round in which nothing moves."""
        log("faults stopped: syncing every desktop until quiet")
        started = time.monotonic()
        for desktop in self.desktops:
            if desktop.worker is None or not desktop.worker.alive():
                desktop.errors.append(f"desktop {desktop.index}: its worker had exited before the settling")
                desktop.start_worker()
        for round_number in range(1, SETTLE_ROUNDS + 1):
            for desktop in self.desktops:
                desktop.settle_conflicts()
            runs = {desktop.index: desktop.request_sync() for desktop in self.desktops}
            rows = {i: self.desktops[i].wait_run(run_id) if run_id else None for i, run_id in runs.items()}
            moved = {i: (row["status"], row["pushed"], row["pulled"]) if row else "no answer" for i, row in rows.items()}
            quiet = all(row and row["status"] == "completed" and row["pushed"] == row["pulled"] == 0
                        for row in rows.values()) and all(d.device.pending() == 0 for d in self.desktops)
            log(f"round {round_number}: {moved}")
            if quiet:
                return {"rounds": round_number, "seconds": round(time.monotonic() - started, 1), "quiet": True}
        return {"rounds": SETTLE_ROUNDS, "seconds": round(time.monotonic() - started, 1), "quiet": False}

    def close(self) -> None:
        self.memory.stop()
        for desktop in self.desktops:
            desktop.close()
        if hasattr(self, "central"):
            self.central.http.close()
        self.proxy.close()
        if self.server is not None:
            self.server.stop()
        self.redis.close()


# --------------------------------------------------------------------------- checks


def check_converged(soak: Soak) -> list[str]:
    """Every desktop holds exactly the server's live records (raw SQL on each side), nothing pending."""
    problems = []
    server = {entity: central_rows(soak.central.database_url, entity) for entity in ENTITIES}
    for desktop in soak.desktops:
        device = desktop.device
        for entity in ENTITIES:
            local, remote = device.live(entity), server[entity]
            if local.keys() != remote.keys():
                problems.append(f"desktop {desktop.index} {entity}: {len(local.keys() - remote.keys())} only "
                                f"local, {len(remote.keys() - local.keys())} only on the server")
            different = [i for i in local.keys() & remote.keys() if local[i] != remote[i]]
            if different:
                problems.append(f"desktop {desktop.index} {entity}: {len(different)} records differ, e.g. "
                                f"{local[different[0]]} != {remote[different[0]]}")
            tracked, held = device.known_versions(entity).keys(), device.rows(entity).keys()
            if held - tracked:
                problems.append(f"desktop {desktop.index} {entity}: {len(held - tracked)} rows sync_metadata "
                                "does not track")
            if (tracked - held) & remote.keys():  # a hard-deleted row is tracked by its tombstone
                problems.append(f"desktop {desktop.index} {entity}: {len((tracked - held) & remote.keys())} "
                                "records live on the server were removed from the local table")
        if device.not_synced():
            problems.append(f"desktop {desktop.index}: left unsynced {device.not_synced()}")
    return problems


def check_nothing_lost(soak: Soak) -> list[str]:
    """Every record a desktop created is on the server, live unless someone deleted it, each
    field the last value one of its writers wrote; no record the desktops did not make."""
    journal, problems = soak.journal, []
    rows = central_rows(soak.central.database_url, "customers", live_only=False)
    for record_id, creator in journal.created.items():
        row = rows.get(record_id)
        deleted = journal.deleted.get(record_id)
        if row is None:  # a record deleted before its first push may never reach the server
            if not deleted:
                problems.append(f"customer {record_id} (made by desktop {creator}) is not on the server")
            continue
        if row["deleted_at"] is not None:
            if not deleted:
                problems.append(f"customer {record_id} is deleted on the server, but no desktop deleted it")
            continue
        for name in ("name", "email", "phone", "city", "notes"):
            last = journal.last.get((record_id, name))
            if not last:
                continue
            if row[name] not in last.values():
                problems.append(f"customer {record_id} {name}: the server holds {row[name]!r}, the last values "
                                f"written were {sorted(last.values())}")
    invented = rows.keys() - journal.created.keys()
    if invented:
        problems.append(f"{len(invented)} customers on the server that no desktop made")
    return problems


def check_conflicts(soak: Soak) -> tuple[list[str], list[str], Counter[str]]:
    """Each conflict kept on any desktop is a real one: a field this desktop and another both
    edited, or a delete on one side against an edit on the other. Also returned apart: the
    conflicts of a desktop with its own earlier value (a push the server applied whose answer
    never reached the local file, then a new edit of the same field): a known problem."""
    journal, problems, echoes, kinds = soak.journal, [], [], Counter()
    for desktop in soak.desktops:
        me = desktop.index
        for row in desktop.device.sql("SELECT record_id, fields, resolution, remote_data FROM sync_conflicts"):
            record_id, fields, remote = row[0], json.loads(row[1]), json.loads(row[3])
            kinds["kept"] += 1
            kinds[f"settled: {row[2] or 'still open'}"] += 1
            if "deleted_at" in fields:
                kinds["delete against edit"] += 1
                deleters, editors = journal.deleted.get(record_id, set()), journal.edited_by(record_id)
                real = (me in deleters and editors - {me}) or (me in editors and deleters - {me})
            else:
                kinds["same field edited"] += 1
                real = all(me in (who := journal.edited.get((record_id, name), set())) and who - {me}
                           for name in fields)
            if real:
                continue
            said = f"desktop {me}: a conflict on customer {record_id} ({', '.join(fields)})"
            if "deleted_at" not in fields and all(
                    journal.origin.get(remote.get(name)) == me and not journal.edited.get((record_id, name), set()) - {me}
                    for name in fields):
                kinds["with its own unacknowledged push"] += 1
                echoes.append(f"{said} against its own earlier value {[remote.get(n) for n in fields]}")
            else:
                problems.append(f"{said} that no two desktops made")
    return problems, echoes, kinds


def check_memory(soak: Soak) -> tuple[list[str], list[dict[str, Any]]]:
    report = sorted(soak.memory.report(), key=lambda g: g["process"])
    problems = [f"{g['process']} grew by {g['growth_mib']} MiB in {g['span_s']} s" for g in report
                if g["growth_mib"] > MEMORY_LIMIT_MIB]
    return problems, report


def check_runs(soak: Soak) -> tuple[list[str], Counter[str], Counter[str]]:
    problems, statuses, errors = [], Counter(), Counter()
    for desktop in soak.desktops:
        for row in desktop.device.runs():
            statuses[row["status"]] += 1
            if row["error"]:
                errors[row["error"]] += 1
            if row["status"] == "running":
                problems.append(f"desktop {desktop.index}: run {row['run_id']} is left running")
        if desktop.worker is None or not desktop.worker.alive():
            problems.append(f"desktop {desktop.index}: its worker is not running at the end")
    return problems, statuses, errors


# --------------------------------------------------------------------------- run and report


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    with postgres_database("craftsync_soak_") as (database_url, _name, version):
        soak = Soak(args, work, database_url)
        try:
            soak.start()
            seconds = soak.soak()
            settled = soak.settle()
            checks: dict[str, list[str]] = {"converged": check_converged(soak)}
            if not settled["quiet"]:
                checks["converged"].insert(0, f"still syncing after {SETTLE_ROUNDS} rounds")
            checks["nothing lost"] = check_nothing_lost(soak)
            checks["no invented conflicts"], echoes, conflicts = check_conflicts(soak)
            known = {"conflict with its own unacknowledged push": echoes}
            checks["memory flat"], memory = check_memory(soak)
            checks["runs ended, workers alive"], statuses, errors = check_runs(soak)
            checks["harness"] = [e for d in soak.desktops for e in d.errors]
            live = central_rows(database_url, "customers")
            counts = sum((d.counts for d in soak.desktops), Counter())
        finally:
            soak.close()
    return {
        "minutes": args.minutes, "seed": args.seed, "settle": args.settle, "postgresql": version,
        "finished": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "machine": machine_note(""),
        "desktops": DESKTOPS, "worker_processes": DESKTOPS, "soak_s": round(seconds, 1), "settle": settled,
        "writes": dict(soak.journal.writes), "requests": dict(counts), "faults": dict(soak.faults),
        "proxy": dict(soak.proxy.counts), "runs": dict(statuses), "run_errors": dict(errors.most_common(8)),
        "conflicts": dict(conflicts), "memory": memory,
        "records": {"created": len(soak.journal.created), "live_on_server": len(live)},
        "checks": {name: {"passed": not problems, "problems": problems[:10], "count": len(problems)}
                   for name, problems in checks.items()},
        "known_problems": {name: {"count": len(found), "seen": found[:10]} for name, found in known.items()},
        "passed": not any(checks.values()) and not (args.strict and any(known.values())),
    }


def summary(f: dict[str, Any]) -> str:
    lines = [f"soak of {f['minutes']:g} min (seed {f['seed']}): {'PASSED' if f['passed'] else 'FAILED'}",
             f"  writes {f['writes']}", f"  faults {f['faults']}", f"  proxy {f['proxy']}",
             f"  requests {f['requests']}", f"  runs {f['runs']}", f"  conflicts {f['conflicts']}",
             f"  settled in {f['settle']['rounds']} rounds, {f['settle']['seconds']} s; records {f['records']}"]
    for g in f["memory"]:
        lines.append(f"  memory {g['process']}: {g['baseline_mib']} -> {g['last_mib']} MiB "
                     f"({g['growth_mib']:+} MiB in {g['span_s']} s)")
    for name, check in f["checks"].items():
        lines.append(f"  check {name}: {'ok' if check['passed'] else 'FAILED'}")
        lines += [f"    - {problem}" for problem in check["problems"]]
    for name, known in f["known_problems"].items():
        lines.append(f"  known problem, {name}: {known['count']}")
        lines += [f"    - {seen}" for seen in known["seen"]]
    return "\n".join(lines)


def section(f: dict[str, Any], command: str) -> str:
    """The "Soak" section of docs/RELIABILITY.md: the faults and hostile inputs, how often, the outcome."""
    faults, proxy, writes, conflicts, runs = f["faults"], f["proxy"], f["writes"], f["conflicts"], f["runs"]
    checks = f["checks"]
    ok = "every desktop converged with nothing lost" if f["passed"] else "**a check failed** (below)"
    refused = f["requests"].get("sync requests refused (broker away)", 0)
    rows = [
        ("A desktop's worker SIGKILLed mid-run, started again 1 s later",
         faults.get("worker killed", 0),
         f"the run it held ends `interrupted` when the next one starts ({runs.get('interrupted', 0)} runs); "
         "its lock lapses; " + ok),
        ("Redis killed (it comes back empty: queue, waiting runs and locks gone)",
         faults.get("broker killed", 0), f"requests meanwhile refused ({refused} in all), later ones run; " + ok),
        ("Redis shut down and started again with its data", faults.get("broker shut down", 0),
         "workers reconnect, queued runs go on; " + ok),
        ("Server SIGKILLed and started again on its database", faults.get("server killed", 0),
         f"the client's retries carry its runs over, or they fail with a plain reason ({runs.get('failed', 0)} "
         "failed runs in all); " + ok),
        ("Server shut down (SIGTERM) and started again", faults.get("server shut down", 0), ok),
        ("Request answered 503 by the proxy before the server", proxy.get("refused", 0),
         "retried by the client with backoff"),
        ("Connection dropped before the request reaches the server", proxy.get("dropped", 0),
         "retried by the client, or the run fails and the next one sends it"),
        ("Answer lost after the server applied the request", proxy.get("answer lost", 0),
         "the push is sent again and answered `unchanged`: nothing doubled"),
        ("Server away while it restarts (the proxy answers 502)", proxy.get("upstream away", 0),
         "retried by the client, or the run fails and the next one completes"),
        ("Two desktops edit the same field of a customer", conflicts.get("same field edited", 0),
         "a conflict kept for the user (policy manual), settled with `craftsync conflicts resolve`"),
        ("A desktop deletes a customer another one edits", conflicts.get("delete against edit", 0),
         "a conflict kept for the user, settled likewise"),
        ("A push the server applied whose answer the desktop never wrote (worker killed, answer lost), "
         "then a new edit of the same field", f["known_problems"]["conflict with its own unacknowledged push"]["count"],
         "**known problem**: a conflict of the desktop with its own earlier value (below, 'Found by the soak'); "
         "settled, nothing lost"),
        ("The host app's plain-SQL writes (create, edit, soft delete, hard delete)",
         sum(writes.values()), ", ".join(f"{v} {k}" for k, v in writes.items())),
    ]
    lines = [
        SECTION, "",
        f"Measured {f['finished']} with:", "", "```", command, "```", "",
        f"- Machine: {f['machine']}; PostgreSQL {f['postgresql']}.",
        f"- {f['desktops']} desktops (SQLite files), each with its own Redis database and its own "
        f"`craftsync worker` ({f['worker_processes']} worker processes: a worker serves one local file), "
        f"one `craftsync server` behind a fault-injecting proxy, one `redis-server`; "
        f"{f['soak_s']:g} s of faults, then {f['settle']['rounds']} rounds of syncs "
        f"({f['settle']['seconds']:g} s) until nothing moved.",
        f"- Result: **{'passed' if f['passed'] else 'FAILED'}**; {f['records']['created']} customers created, "
        f"{f['records']['live_on_server']} live on the server at the end; runs: "
        + ", ".join(f"{count} {status}" for status, count in runs.items()) + ".",
        "",
        "| fault or hostile input | how often | outcome |",
        "| --- | --- | --- |",
        *[f"| {what} | {count} | {outcome} |" for what, count, outcome in rows],
        "",
        "| check | result |",
        "| --- | --- |",
        *[f"| {name} | {'passed' if c['passed'] else 'FAILED: ' + '; '.join(c['problems'][:3])} |"
          for name, c in checks.items()],
        "",
        f"Memory (RSS, psutil), from {WARMUP_S:g} s after each process started to its last sample; "
        f"the limit is {MEMORY_LIMIT_MIB:g} MiB of growth:",
        "",
        "| process | after warm-up | last | growth | over |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {g['process']} | {g['baseline_mib']} MiB | {g['last_mib']} MiB | {g['growth_mib']:+} MiB | "
          f"{g['span_s']} s |" for g in f["memory"]],
    ]
    if f["run_errors"]:
        lines += ["", "What the failed runs said (the sentence a user reads), most frequent first:", ""]
        lines += [f"- {count} x {error}" for error, count in f["run_errors"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long the faults go on (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the host apps' writes and the proxy")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument("--doc", type=Path, help="write the 'Soak' section of this doc (docs/RELIABILITY.md)")
    parser.add_argument("--settle", choices=("fields", "whole", "any"), default="fields",
                        help="how a desktop settles a conflict: 'fields' takes one side's values of the fields in "
                             "conflict and keeps every other edit (--use merged, the default), the server's side for "
                             "a row the host app removed; 'whole' takes one side's whole record (--use remote / "
                             "--use local); 'any' is 'fields' for removed rows too")
    parser.add_argument("--strict", action="store_true",
                        help="fail on the known problems too (docs/RELIABILITY.md, 'Found by the soak')")
    parser.add_argument("--workdir", type=Path, help="keep the files and logs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="craftsync-soak-") as temporary:
        work = args.workdir or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        figures = run(args, work)
    print(summary(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if args.doc:
        command = f".venv/bin/python tests/bench/soak.py --minutes {args.minutes:g} --seed {args.seed} --doc {args.doc}"
        write_doc(args.doc, SECTION, section(figures, command))
        log(f"wrote the '{SECTION}' section of {args.doc}")
    return 0 if figures["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
