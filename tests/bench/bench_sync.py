"""Benchmark of the sync engine through real dramatiq workers against the real server.

Run from the repository root::

    .venv/bin/python tests/bench/bench_sync.py [--records 100000] [--backend sqlite|postgresql] [--quick]

Everything runs as it does on a desktop: the reference server is ``craftsync server`` in a
subprocess on a free loopback port (its central database an SQLite file in a temporary
directory, or a fresh PostgreSQL database with ``--backend postgresql``), and every measured
sync is done by ``craftsync worker --processes 1 --threads 2`` in a process group of its own,
on a Redis database number claimed for this run and flushed first. Syncs are queued with
``worker.queue.request_sync`` and timed from the request until the run's ``completed`` event
arrives on ``craftsync:events``. Each measured worker is started fresh for its run, on a
local SQLite file of its own.

1. Full pull of ``--records`` (N) customers into an empty local database, against a raw-copy
   baseline in the same run: the same pages (``GET /api/customers?since=..&limit=5000``)
   fetched with httpx and written with ``executemany`` into an SQLite table of the same
   columns on a connection with the local store's settings, one commit per page, no sync
   bookkeeping. The baseline runs before and after the worker; the ratio is taken against
   the faster of the two (target >= 0.8x).
2. Push of N local changes (rows the host app inserted with plain SQL) against a naive
   client that POSTs one record per request, measured on ``--naive`` records (target >= 30x).
3. Incremental sync: 10 host-app updates, then a ``both`` sync, in a local database of 3N
   rows against one of 3N/100 rows, each mirroring a server of that size. The large local
   database is filled by pulling in this process (``SyncEngine`` with a ``RemoteClient``
   over HTTP) to save time; the small one likewise from a second server. Two workers, one
   per database (each on its own Redis database), are warmed up with two syncs each, then
   measured back to back, median of ``--repeat`` (target: large within 2x of small).
4. Peak RSS of each dramatiq worker process (the children of ``craftsync worker``; their
   ``VmHWM`` from /proc, and the largest ``VmRSS`` sampled every 50 ms) during pulls and
   pushes of 0.3N and N records, to show that memory stays flat (target < 100 MiB).
5. The CouchDB replication protocol's ~2,600 customer-shaped docs/s at ~190 MiB on this
   machine class, quoted in issue 3, is cited as a reference figure (not run here).

``--quick`` shrinks everything (N = 10,000) for a smoke run and does not touch the doc.
``--profile DIR`` attaches ``py-spy record`` to the worker process during the N pull and
push (install py-spy into the venv first); profiling slows the worker, so its figures are
not written to the doc. The results are printed as a table and written into the
``## Sync engine (issue 3)`` section of docs/BENCHMARKS.md (``--no-doc`` to skip); the rest
of the file is left as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

import httpx
import psutil
from dramatiq.brokers.redis import RedisBroker

from craftsync.contract.records import data_fields
from tests.bench.bench_common import (
    API_KEY,
    add_output_arguments,
    cpu_note,
    cpu_seconds,
    customer_fields,
    make_customers,
    postgres_database,
    section_head,
    verdict,
    write_doc,
)
from tests.support.process import (
    CRAFTSYNC,
    CRAFTSYNC_SCRIPT,
    EventLog,
    RedisDB,
    Service,
    claim_redis_db,
    clean_env,
    free_port,
    start_server,
    wait_until,
)
from craftsync.worker.engine import SyncEngine, SyncOptions
from craftsync.worker.run import PAGE_SIZE
from craftsync.worker.queue import request_sync
from craftsync.worker.remote import RemoteClient, RemoteSettings
from craftsync.worker.store import LocalStore, connect

DOC: Final = ROOT / "docs" / "BENCHMARKS.md"
SECTION: Final = "## Sync engine (issue 3)"

ENTITY: Final = "customers"
FIELDS: Final = data_fields(ENTITY)
HOST_FIELDS: Final = ("name", "company", "email", "phone", "address", "city", "state", "zip", "country", "notes")
MIB: Final = 1024 * 1024

REDIS_HOST: Final = os.environ.get("CRAFTSYNC_BENCH_REDIS_HOST", "127.0.0.1")
REDIS_PORT: Final = int(os.environ.get("CRAFTSYNC_BENCH_REDIS_PORT", "6379"))
#: Claimed as tests/support/worker.py claims them (tests.support.process.claim_redis_db), so
#: that a concurrent test run and this benchmark never share a database; searched from the
#: top, where tests look last.
REDIS_DBS: Final = range(14, 0, -1)

#: Targets of issue 3.
TARGET_PULL_RATIO: Final = 0.8
TARGET_PUSH_RATIO: Final = 30.0
TARGET_INCREMENTAL_RATIO: Final = 2.0
TARGET_RSS_MIB: Final = 100.0
#: A peak at N records within this factor of the peak at 0.3N counts as flat.
FLAT_FACTOR: Final = 1.10
#: The reference figure quoted in issue 3 (not measured here), and the aim against it.
COUCHDB_DOCS_PER_S: Final = 2600.0
COUCHDB_RSS_MIB: Final = 190.0
COUCHDB_AIM: Final = 10.0
#: Host-app edits per incremental sync.
INCREMENTAL_EDITS: Final = 10
#: What shares the machine, for the doc's machine note.
MACHINE_SHARED: Final = f", SQLite {sqlite3.sqlite_version}; server, worker, Redis and this script share the machine"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- server


@dataclass
class Central:
    """``craftsync server`` on a free loopback port, and an authorised client of it."""

    name: str
    url: str  # the API root, ending in /api
    service: Service
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=600)

    def seed(self, count: int, seed: int, batch: int = 5000) -> None:
        """Push ``count`` new customers directly over HTTP, ``batch`` a request."""
        started = time.perf_counter()
        records = make_customers(count, seed)
        sent = 0
        while sent < count:
            chunk = [next(records) for _ in range(min(batch, count - sent))]
            response = self.http.post(f"/{ENTITY}", json={"records": chunk})
            if response.status_code != 200:
                raise RuntimeError(f"seeding {self.name}: {response.status_code} {response.text[:300]}")
            bad = [r for r in response.json()["results"] if r["status"] != "created"]
            if bad:
                raise RuntimeError(f"seeding {self.name}: {len(bad)} records not created, e.g. {bad[0]}")
            sent += len(chunk)
        seconds = time.perf_counter() - started
        log(f"  seeded {count:,} customers into the {self.name} server in {seconds:.1f} s ({count / seconds:,.0f}/s)")

    def count(self) -> int:
        """Records in the change feed (each record once, at its latest change)."""
        response = self.http.get(f"/{ENTITY}", params={"since": "0", "limit": 1, "count": "true"})
        response.raise_for_status()
        return int(response.json()["remaining"])

    def cpu(self) -> float | None:
        return cpu_seconds(self.service.pid)

    def close(self) -> None:
        self.http.close()
        self.service.stop(timeout=20)


@contextmanager
def central_database(backend: str, workdir: Path, name: str) -> Iterator[tuple[str, str]]:
    """A fresh central database: its SQLAlchemy URL and a description."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / f'central-{name}.db'}", f"SQLite {sqlite3.sqlite_version}, a file in a temp dir"
        return
    with postgres_database("craftsync_bench_sync_") as (url, _, version):
        yield url, f"PostgreSQL {version} on 127.0.0.1, a fresh database"


@contextmanager
def central_server(name: str, database_url: str, workdir: Path) -> Iterator[Central]:
    port = free_port()
    home = workdir / f"server-{name}"
    env = clean_env(home, DATABASE_URL=database_url, API_KEYS=API_KEY, RATE_LIMIT="100000000/minute")
    service = start_server(env, port=port, log=workdir / f"server-{name}.log", cwd=home, timeout=60,
                           name=f"the {name} server")
    central = Central(name, f"http://127.0.0.1:{port}/api", service)
    try:
        yield central
    finally:
        central.close()


# --------------------------------------------------------------------------- Redis and events


@contextmanager
def claimed_redis_db(forced: int | None = None) -> Iterator[RedisDB]:
    """A Redis database number of our own (claimed, flushed, the claim renewed while the
    benchmark runs), released and flushed at the end if the claim is still ours."""
    db = claim_redis_db(REDIS_HOST, REDIS_PORT, [forced] if forced is not None else REDIS_DBS)
    db.keep_claim()
    try:
        yield db
    finally:
        db.release(only_if_claimed=True)


class RunEvents(EventLog):
    """Every event on the events channel of the workers' Redis database, with the monotonic
    time it arrived (events are also matched by run id)."""

    def wait_end(self, run_id: str, *, timeout: float, alive: Callable[[], bool]) -> tuple[float, float | None, dict[str, Any]]:
        """(arrival of the run's end event, arrival of its started event, the end event)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                mine = [(t, e) for t, e in zip(self.arrived, self.events, strict=True) if e.get("run_id") == run_id]
                started = next((t for t, e in mine if e["type"] == "started"), None)
                for arrived, event in mine:
                    if event["type"] in ("completed", "failed"):
                        return arrived, started, event
                if not alive():
                    raise RuntimeError(f"the worker died while run {run_id} was going")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"run {run_id} did not end within {timeout:.0f} s; last: {mine[-2:]}")
                self._changed.wait(min(left, 1.0))


# --------------------------------------------------------------------------- workers and memory


class MemorySampler:
    """The largest VmRSS of each process of a group seen every ``interval`` s, plus VmHWM."""

    def __init__(self, leader: int, interval: float = 0.05) -> None:
        self.leader = leader
        self.interval = interval
        self.peaks: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def processes(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.leader).children(recursive=True)
        except psutil.Error:
            return []

    def sample(self) -> None:
        for proc in self.processes():
            try:
                rss = proc.memory_info().rss
                if proc.pid not in self.names:
                    self.names[proc.pid] = " ".join(proc.cmdline()[-6:])[:120]
            except psutil.Error:
                continue
            self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0), rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()


def vm_status(pid: int, key: str) -> int | None:
    """A ``Vm*`` line of /proc/<pid>/status, in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass
class Memory:
    """Peak memory of the worker processes of one measurement."""

    label: str
    #: pid -> (peak sampled VmRSS, VmHWM) of each child of ``craftsync worker``.
    children: dict[int, tuple[int, int | None]]
    names: dict[int, str]
    idle: dict[int, int]
    leader_hwm: int | None

    @property
    def worker_peak(self) -> int:
        """The largest peak of one worker process (the child that ran the sync)."""
        return max((max(rss, hwm or 0) for rss, hwm in self.children.values()), default=0)

    @property
    def idle_peak(self) -> int:
        return max(self.idle.values(), default=0)


class Worker:
    """``craftsync worker --processes 1 --threads 2`` for one local database."""

    def __init__(self, label: str, *, db: RedisDB, central: Central, local: Path, workdir: Path) -> None:
        self.label = label
        self.db = db
        home = workdir / f"worker-{label}"
        env = clean_env(home, REDIS_URL=db.url, CRAFTSYNC_DB=str(local), REMOTE_API_URL=central.url,
                        REMOTE_API_KEY=API_KEY)
        self.service = Service([*CRAFTSYNC, "worker", "--processes", "1", "--threads", "2"], env=env,
                               log=workdir / f"worker-{label}.log", cwd=home)
        self.sampler = MemorySampler(self.service.pid)
        self.broker = RedisBroker(url=db.url)
        wait_until(self._consuming, timeout=60, interval=0.1, what=f"worker {label} to consume")
        time.sleep(0.5)  # let the processes settle before the idle reading
        self.idle = {p.pid: p.memory_info().rss for p in self.sampler.processes()}
        self.sampler.start()

    def _consuming(self) -> bool:
        if not self.service.alive():
            raise RuntimeError(f"worker {self.label} exited:\n{self.service.tail()}")
        now_ms = time.time() * 1000
        beats = self.db.client.zrange("dramatiq:__heartbeats__", 0, -1, withscores=True)
        return any(now_ms - score < 5000 for _, score in beats) and bool(self.sampler.processes())

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.sampler.processes()]

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) or 0.0 for pid in self.worker_pids())

    def sync(self, events: RunEvents, direction: str, *, timeout: float = 3600) -> Run:
        cpu = self.cpu()
        started = time.monotonic()
        run_id = request_sync(self.broker, self.db.client, [ENTITY], direction=direction, policy="remote")
        ended, began, event = events.wait_end(run_id, timeout=timeout, alive=self.service.alive)
        if event.get("status") != "completed":
            raise RuntimeError(f"worker {self.label}: {direction} run ended {event.get('status')}: {event.get('error')}")
        return Run(direction, ended - started, ended - began if began else None, event, self.cpu() - cpu)

    def memory(self) -> Memory:
        self.sampler.stop()
        children = {pid: (rss, vm_status(pid, "VmHWM")) for pid, rss in self.sampler.peaks.items()}
        return Memory(self.label, children, dict(self.sampler.names), self.idle, vm_status(self.service.pid, "VmHWM"))

    def stop(self) -> None:
        self.sampler.stop()
        self.service.stop(timeout=20)
        self.broker.close()


@dataclass
class Run:
    direction: str
    seconds: float  # request_sync until the completed event arrived
    engine_seconds: float | None  # started event until completed event
    event: dict[str, Any]
    worker_cpu: float


@contextmanager
def profiled(worker: Worker, out: Path | None, name: str) -> Iterator[None]:
    """``py-spy record`` on the worker's processes for the block, when ``out`` is given."""
    if out is None:
        yield
        return
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not spy:
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for pid in worker.worker_pids():
        target = out / f"{name}-{pid}"
        with open(f"{target}.log", "wb") as errors:
            procs.append((subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "-o", f"{target}.txt",
                 "--nonblocking"], stdout=subprocess.DEVNULL, stderr=errors), target))
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        for proc, _ in procs:
            proc.send_signal(signal.SIGINT)
        for proc, target in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log(f"  py-spy profile: {target}.txt")


# --------------------------------------------------------------------------- local databases


def new_local(path: Path) -> Path:
    """An empty local database with the schema, as any craftsync command creates it."""
    LocalStore(path).close()
    return path


def host_connection(path: Path) -> sqlite3.Connection:
    """The host app's own connection: plain SQL, autocommit."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def host_insert(path: Path, count: int, seed: int) -> None:
    """``count`` customers inserted by the host app in one transaction, ids and times by default."""
    rng = random.Random(seed)
    conn = host_connection(path)
    marks = ", ".join("?" * len(HOST_FIELDS))
    conn.execute("BEGIN")
    conn.executemany(
        f"INSERT INTO customers ({', '.join(HOST_FIELDS)}) VALUES ({marks})",
        (tuple(customer_fields(rng).values()) for _ in range(count)),
    )
    conn.execute("COMMIT")
    conn.close()


def local_counts(path: Path) -> tuple[int, int]:
    """(customers rows, sync_metadata rows not 'synced')."""
    conn = host_connection(path)
    try:
        rows = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
        unsynced = conn.execute("SELECT count(*) FROM sync_metadata WHERE sync_status != 'synced'").fetchone()[0]
    finally:
        conn.close()
    return int(rows), int(unsynced)


def pull_in_process(central: Central, path: Path) -> float:
    """Fill a local database by a pull through the engine in this process; records/s."""
    remote = RemoteClient(RemoteSettings(base_url=central.url, api_key=API_KEY, timeout_s=600))
    with LocalStore(path) as store, remote:
        started = time.perf_counter()
        result = SyncEngine(store, remote).sync(ENTITY, SyncOptions(direction="pull"))
        seconds = time.perf_counter() - started
    if result.status != "completed":
        raise RuntimeError(f"in-process pull from {central.name}: {result.status} {result.error}")
    return result.pulled / seconds


# --------------------------------------------------------------------------- baselines


def raw_copy(central: Central, path: Path, page: int) -> tuple[float, int]:
    """The raw-copy baseline: fetch every page, executemany it into a plain table, commit.

    Seconds and records copied. The connection has the local store's settings (WAL,
    synchronous NORMAL, the same autocheckpoint); the table has the customers columns."""
    conn = connect(path)
    conn.execute(f"CREATE TABLE customers (id TEXT PRIMARY KEY NOT NULL, {', '.join(f'{n} TEXT' for n in FIELDS[1:])})")
    insert = f"INSERT INTO customers ({', '.join(FIELDS)}) VALUES ({', '.join('?' * len(FIELDS))})"
    copied = 0
    with httpx.Client(base_url=central.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=600) as http:
        started = time.perf_counter()
        cursor = "0"
        while True:
            response = http.get(f"/{ENTITY}", params={"since": cursor, "limit": page})
            response.raise_for_status()
            body = response.json()
            conn.execute("BEGIN")
            conn.executemany(insert, [tuple(r.get(n) for n in FIELDS) for r in body["records"]])
            conn.execute("COMMIT")
            copied += len(body["records"])
            cursor = body["next_cursor"]
            if not body["has_more"]:
                break
        seconds = time.perf_counter() - started
    conn.close()
    return seconds, copied


def naive_push(central: Central, path: Path) -> tuple[float, int]:
    """The naive client: every local row POSTed on its own (no bookkeeping at all)."""
    conn = host_connection(path)
    conn.row_factory = sqlite3.Row
    rows = conn.execute(f"SELECT {', '.join(FIELDS)} FROM customers").fetchall()
    conn.close()
    with httpx.Client(base_url=central.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as http:
        started = time.perf_counter()
        for row in rows:
            response = http.post(f"/{ENTITY}", json=dict(row))
            if response.status_code != 201:
                raise RuntimeError(f"naive push: {response.status_code} {response.text[:300]}")
        seconds = time.perf_counter() - started
    return seconds, len(rows)


# --------------------------------------------------------------------------- the benchmark


@dataclass
class Results:
    backend: str = ""
    database: str = ""
    records: int = 0
    small: int = 0
    naive_n: int = 0
    incr_big: int = 0
    incr_small: int = 0
    repeat: int = 0
    # 1. pull
    pull_small: Run | None = None
    pull: Run | None = None
    pull_server_cpu: float | None = None
    baseline_seconds: list[float] = field(default_factory=list)
    baseline_server_cpu: list[float | None] = field(default_factory=list)
    # 2. push
    push_small: Run | None = None
    push: Run | None = None
    push_server_cpu: float | None = None
    naive_seconds: float = 0.0
    naive_server_cpu: float | None = None
    # 3. incremental
    fill_rates: dict[str, float] = field(default_factory=dict)
    incr_small_times: list[float] = field(default_factory=list)
    incr_big_times: list[float] = field(default_factory=list)
    incr_small_engine: list[float] = field(default_factory=list)
    incr_big_engine: list[float] = field(default_factory=list)
    # 4. memory
    memory: dict[str, Memory] = field(default_factory=dict)
    load: list[tuple[str, float]] = field(default_factory=list)

    # -- derived figures
    @property
    def pull_rate(self) -> float:
        assert self.pull is not None
        return self.records / self.pull.seconds

    @property
    def baseline_rates(self) -> list[float]:
        return [self.records / s for s in self.baseline_seconds]

    @property
    def pull_ratio(self) -> float:
        return self.pull_rate / max(self.baseline_rates)

    @property
    def push_rate(self) -> float:
        assert self.push is not None
        return self.records / self.push.seconds

    @property
    def naive_rate(self) -> float:
        return self.naive_n / self.naive_seconds

    @property
    def push_ratio(self) -> float:
        return self.push_rate / self.naive_rate

    @property
    def incr_ratio(self) -> float:
        return statistics.median(self.incr_big_times) / statistics.median(self.incr_small_times)

    def peak(self, key: str) -> float:
        return self.memory[key].worker_peak / MIB

    @property
    def peak_max(self) -> float:
        return max(self.peak(k) for k in ("pull", "pull_small", "push", "push_small"))

    def flat(self, kind: str) -> float:
        return self.peak(kind) / self.peak(f"{kind}_small")


def note_load(results: Results, when: str) -> None:
    try:
        results.load.append((when, os.getloadavg()[0]))
    except OSError:
        pass


def verify_local(path: Path, rows: int, what: str) -> None:
    found, unsynced = local_counts(path)
    if found != rows or unsynced:
        raise RuntimeError(f"{what}: local database holds {found} rows ({rows} expected), {unsynced} not synced")


def measure_worker(results: Results, key: str, worker: Worker, events: RunEvents, direction: str,
                   central: Central, profile: Path | None) -> Run:
    cpu = central.cpu()
    with profiled(worker, profile, key):
        run = worker.sync(events, direction)
    server_cpu = None if cpu is None else (central.cpu() or 0.0) - cpu
    if key == "pull":
        results.pull_server_cpu = server_cpu
    elif key == "push":
        results.push_server_cpu = server_cpu
    results.memory[key] = worker.memory()
    return run


def bench_pull(results: Results, args: argparse.Namespace, central: Central, events: RunEvents,
               rdb: RedisDB, workdir: Path) -> None:
    n, small = results.records, results.small
    central.seed(small, seed=1)
    log(f"1/4a worker pull of {small:,} records (memory at 0.3N) ...")
    local = new_local(workdir / "pull-small.db")
    worker = Worker("pull-small", db=rdb, central=central, local=local, workdir=workdir)
    try:
        results.pull_small = measure_worker(results, "pull_small", worker, events, "pull", central, None)
    finally:
        worker.stop()
    verify_local(local, small, "pull of 0.3N")
    log(f"  {small / results.pull_small.seconds:,.0f} records/s, peak RSS {results.peak('pull_small'):.1f} MiB")

    central.seed(n - small, seed=2)
    if central.count() != n:
        raise RuntimeError(f"the server holds {central.count()} records, not {n}")
    note_load(results, "before the pull")

    def baseline(number: int) -> None:
        cpu = central.cpu()
        seconds, copied = raw_copy(central, workdir / f"raw-copy-{number}.db", PAGE_SIZE)
        if copied != n:
            raise RuntimeError(f"raw copy {number} copied {copied} records, not {n}")
        results.baseline_seconds.append(seconds)
        results.baseline_server_cpu.append(None if cpu is None else (central.cpu() or 0.0) - cpu)
        log(f"  raw-copy baseline {number}: {n / seconds:,.0f} records/s ({seconds:.1f} s)")

    log(f"1/4b raw-copy baseline, then worker pull of {n:,} records, then the baseline again ...")
    baseline(1)
    local = new_local(workdir / "pull.db")
    worker = Worker("pull", db=rdb, central=central, local=local, workdir=workdir)
    try:
        results.pull = measure_worker(results, "pull", worker, events, "pull", central, args.profile)
    finally:
        worker.stop()
    verify_local(local, n, "pull of N")
    log(f"  worker pull: {results.pull_rate:,.0f} records/s ({results.pull.seconds:.1f} s), "
        f"peak RSS {results.peak('pull'):.1f} MiB")
    baseline(2)
    note_load(results, "after the pull")


def bench_push(results: Results, args: argparse.Namespace, central: Central, events: RunEvents,
               rdb: RedisDB, workdir: Path) -> None:
    n, small = results.records, results.small
    for key, count, seed in (("push_small", small, 3), ("push", n, 4)):
        if key == "push":
            log(f"2/4b naive client: {results.naive_n:,} records, one POST each ...")
            local = new_local(workdir / "naive.db")
            host_insert(local, results.naive_n, seed=5)
            cpu = central.cpu()
            results.naive_seconds, _ = naive_push(central, local)
            results.naive_server_cpu = None if cpu is None else (central.cpu() or 0.0) - cpu
            log(f"  naive: {results.naive_rate:,.1f} records/s")
            note_load(results, "before the push")
        log(f"2/4{'a' if key == 'push_small' else 'c'} worker push of {count:,} host-app inserts ...")
        local = new_local(workdir / f"{key}.db")
        host_insert(local, count, seed=seed)
        worker = Worker(key, db=rdb, central=central, local=local, workdir=workdir)
        try:
            run = measure_worker(results, key, worker, events, "push", central, args.profile if key == "push" else None)
        finally:
            worker.stop()
        if run.event.get("pushed") != count:
            raise RuntimeError(f"{key}: pushed {run.event.get('pushed')}, expected {count}")
        verify_local(local, count, key)
        setattr(results, key, run)
        log(f"  {count / run.seconds:,.0f} records/s ({run.seconds:.1f} s), peak RSS {results.peak(key):.1f} MiB")
    note_load(results, "after the push")


def bench_incremental(results: Results, args: argparse.Namespace, big: Central, events: RunEvents,
                      rdb: RedisDB, stack: ExitStack, workdir: Path, database_url: Callable[[str], str]) -> None:
    log(f"3/4 incremental: filling a {results.incr_big:,}-row and a {results.incr_small:,}-row local database ...")
    have = big.count()
    if have > results.incr_big:
        raise RuntimeError(f"the server already holds {have} records, more than {results.incr_big}")
    big.seed(results.incr_big - have, seed=6)
    small = stack.enter_context(central_server("small", database_url("small"), workdir))
    small.seed(results.incr_small, seed=7)
    rdb_small = stack.enter_context(claimed_redis_db())
    events_small = RunEvents(rdb_small.client)  # each Redis database has its own events channel
    stack.callback(events_small.close)
    locals_: dict[str, Path] = {}
    for label, central, rows in (("small", small, results.incr_small), ("big", big, results.incr_big)):
        path = new_local(workdir / f"incremental-{label}.db")
        results.fill_rates[label] = pull_in_process(central, path)
        verify_local(path, rows, f"incremental {label} fill")
        locals_[label] = path
        log(f"  {label}: {rows:,} rows pulled in-process at {results.fill_rates[label]:,.0f} records/s")

    workers = {
        "small": Worker("incremental-small", db=rdb_small, central=small, local=locals_["small"], workdir=workdir),
        "big": Worker("incremental-big", db=rdb, central=big, local=locals_["big"], workdir=workdir),
    }
    ids: dict[str, list[str]] = {}
    hosts: dict[str, sqlite3.Connection] = {}
    for label, path in locals_.items():
        hosts[label] = host_connection(path)
        ids[label] = [row[0] for row in hosts[label].execute("SELECT id FROM customers")]
    rng = random.Random(8)
    edit = 0

    def one(label: str) -> Run:
        nonlocal edit
        host = hosts[label]
        for record_id in rng.sample(ids[label], INCREMENTAL_EDITS):  # the host app's own statements
            edit += 1
            host.execute(
                "UPDATE customers SET notes = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
                (f"Called back about order #{edit}.", record_id),
            )
        run = workers[label].sync(events_small if label == "small" else events, "both", timeout=600)
        if run.event.get("pushed") != INCREMENTAL_EDITS:
            raise RuntimeError(f"incremental {label}: pushed {run.event.get('pushed')}, expected {INCREMENTAL_EDITS}")
        return run

    note_load(results, "before the incremental syncs")
    try:
        for label in workers:  # warm-up: each worker thread's engine, connections, caches
            for _ in range(2):
                one(label)
        # Each database's syncs back to back: a dramatiq consumer that has been idle polls
        # Redis ever more slowly (up to dramatiq's worker_timeout, 1 s), which would add a
        # random delay of up to a second to a sync whose own work takes milliseconds.
        for label in workers:
            for _ in range(results.repeat):
                run = one(label)
                getattr(results, f"incr_{label}_times").append(run.seconds)
                getattr(results, f"incr_{label}_engine").append(run.engine_seconds or float("nan"))
                log(f"  {label}: {run.seconds * 1000:.0f} ms (engine {(run.engine_seconds or 0) * 1000:.0f} ms)")
        results.memory["incremental_big"] = workers["big"].memory()
    finally:
        for host in hosts.values():
            host.close()
        for worker in workers.values():
            worker.stop()
    for label, path in locals_.items():
        _, unsynced = local_counts(path)
        if unsynced:
            raise RuntimeError(f"incremental {label}: {unsynced} records left unsynced")
    note_load(results, "after the incremental syncs")


def run(args: argparse.Namespace) -> Results:
    results = Results(records=args.records, small=args.small, naive_n=args.naive, incr_big=args.incr_rows,
                      incr_small=max(1, args.incr_rows // 100), repeat=args.repeat, backend=args.backend)
    with tempfile.TemporaryDirectory(prefix="craftsync-bench-sync-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        log(f"work directory {workdir}")

        def database_url(name: str) -> str:
            url, description = stack.enter_context(central_database(args.backend, workdir, name))
            results.database = description
            return url

        central = stack.enter_context(central_server("main", database_url("main"), workdir))
        rdb = stack.enter_context(claimed_redis_db(args.redis_db))
        events = RunEvents(rdb.client)
        stack.callback(events.close)
        log(f"server {central.url} (pid {central.service.pid}), Redis db {rdb.number}, {results.database}")
        bench_pull(results, args, central, events, rdb, workdir)
        bench_push(results, args, central, events, rdb, workdir)
        bench_incremental(results, args, central, events, rdb, stack, workdir, database_url)
    return results


# --------------------------------------------------------------------------- reporting


def spread(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})"


def dispatch(run: Run) -> str:
    """Time from the request to the run's started event: queue pick-up and opening the store."""
    return "n/a" if run.engine_seconds is None else f"{run.seconds - run.engine_seconds:.2f} s"


def engine_ratio(run: Run, records: int, baseline_rate: float, places: int = 2) -> str:
    return "n/a" if not run.engine_seconds else f"{records / run.engine_seconds / baseline_rate:.{places}f}x"


def table(r: Results) -> str:
    assert r.pull and r.push and r.pull_small and r.push_small
    n, s = f"{r.records:,}", f"{r.small:,}"
    rows: list[tuple[str, str]] = [
        (f"1. worker pull of {n} into an empty database, records/s",
         f"{r.pull_rate:,.0f} ({r.pull.seconds:.1f} s, of which {dispatch(r.pull)} before the run started)"),
        ("   the run alone (its started -> completed events), records/s",
         f"{r.records / r.pull.engine_seconds:,.0f} ({r.pull.engine_seconds:.1f} s)" if r.pull.engine_seconds else "n/a"),
        ("   raw-copy baseline (httpx + executemany, page 5000), records/s, before / after",
         " / ".join(f"{rate:,.0f}" for rate in r.baseline_rates)),
        (f"   ratio worker / faster baseline (target >= {TARGET_PULL_RATIO:g}x)",
         (f"{r.pull_ratio:.2f}x, {verdict(r.pull_ratio >= TARGET_PULL_RATIO)} "
         f"(the run alone: {engine_ratio(r.pull, r.records, max(r.baseline_rates))})")),
        ("   worker CPU / server CPU during the worker pull",
         f"{cpu_note(r.pull.worker_cpu, r.pull.seconds)} / {cpu_note(r.pull_server_cpu, r.pull.seconds)}"),
        ("   server CPU during baseline 1",
         cpu_note(r.baseline_server_cpu[0] if r.baseline_server_cpu else None, r.baseline_seconds[0])),
        (f"2. worker push of {n} host-app inserts, records/s",
         f"{r.push_rate:,.0f} ({r.push.seconds:.1f} s, of which {dispatch(r.push)} before the run started)"),
        ("   the run alone (its started -> completed events), records/s",
         f"{r.records / r.push.engine_seconds:,.0f} ({r.push.engine_seconds:.1f} s)" if r.push.engine_seconds else "n/a"),
        (f"   naive client, one POST per record ({r.naive_n:,} records), records/s", f"{r.naive_rate:,.1f}"),
        (f"   ratio worker / naive (target >= {TARGET_PUSH_RATIO:g}x)",
         (f"{r.push_ratio:.1f}x, {verdict(r.push_ratio >= TARGET_PUSH_RATIO)} "
         f"(the run alone: {engine_ratio(r.push, r.records, r.naive_rate, 1)})")),
        ("   worker CPU / server CPU during the worker push",
         f"{cpu_note(r.push.worker_cpu, r.push.seconds)} / {cpu_note(r.push_server_cpu, r.push.seconds)}"),
        (f"3. incremental both-sync of {INCREMENTAL_EDITS} edits, {r.incr_small:,}-row database, median of {r.repeat}",
         spread(r.incr_small_times)),
        (f"   same in a {r.incr_big:,}-row database", spread(r.incr_big_times)),
        ("   the run alone (started -> completed events), small / large, median",
         f"{statistics.median(r.incr_small_engine) * 1000:.0f} / {statistics.median(r.incr_big_engine) * 1000:.0f} ms"),
        (f"   ratio large / small (target <= {TARGET_INCREMENTAL_RATIO:g}x)",
         (f"{r.incr_ratio:.2f}x, {verdict(r.incr_ratio <= TARGET_INCREMENTAL_RATIO)} (the run alone: "
         f"{statistics.median(r.incr_big_engine) / statistics.median(r.incr_small_engine):.2f}x)")),
        (f"4. peak RSS of the worker process: pull of {s} / {n}",
         f"{r.peak('pull_small'):.1f} / {r.peak('pull'):.1f} MiB ({r.flat('pull'):.2f}x)"),
        (f"   push of {s} / {n}",
         f"{r.peak('push_small'):.1f} / {r.peak('push'):.1f} MiB ({r.flat('push'):.2f}x)"),
        ("   idle worker process after start-up; the dramatiq parent process (peak)",
         f"{r.memory['pull'].idle_peak / MIB:.1f} MiB; {(r.memory['pull'].leader_hwm or 0) / MIB:.1f} MiB"),
        (f"   target < {TARGET_RSS_MIB:g} MiB and flat (N within {FLAT_FACTOR:.2f}x of 0.3N)",
         verdict(r.peak_max < TARGET_RSS_MIB and max(r.flat("pull"), r.flat("push")) <= FLAT_FACTOR)),
        (f"5. vs CouchDB replication ({COUCHDB_DOCS_PER_S:,.0f} docs/s, ~{COUCHDB_RSS_MIB:g} MiB; cited, not run)",
         (f"pull {r.pull_rate / COUCHDB_DOCS_PER_S:.1f}x, push {r.push_rate / COUCHDB_DOCS_PER_S:.1f}x "
         f"(aim {COUCHDB_AIM:g}x: {verdict(min(r.pull_rate, r.push_rate) >= COUCHDB_AIM * COUCHDB_DOCS_PER_S)}); "
         f"memory {r.peak_max:.0f} vs {COUCHDB_RSS_MIB:g} MiB")),
        ("load average (1 min) along the run", ", ".join(f"{v:.2f} {w}" for w, v in r.load) or "n/a"),
    ]
    lines = ["| measure | result |", "| --- | --- |"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


def section(r: Results, command: str, notes: str | None) -> str:
    lines = [
        *section_head(SECTION, command, MACHINE_SHARED),
        (f"- Server: `craftsync server` (waitress) in its own process, central database {r.database}, "
        "`RATE_LIMIT=100000000/minute`, seeded by direct HTTP pushes of 5,000 records."),
        ("- Worker: `craftsync worker --processes 1 --threads 2`, started fresh for each measurement on a local "
        "SQLite file of its own, on a Redis database claimed and flushed for the run; each sync queued with "
        "`worker.queue.request_sync` and timed from the request to the run's `completed` event on "
        "`craftsync:events` (so worker start-up costs such as opening the store are inside the time)."),
        "- Records: customers with every field filled, time-ordered ids.",
        (f"- 1: the raw-copy baseline walks the same pages (`limit={PAGE_SIZE}`) with httpx and `executemany`s "
        "each into a plain table of the customers columns, one commit per page, on a connection with the local "
        "store's settings (WAL, `synchronous=NORMAL`, autocheckpoint 10,000); it runs right before and right "
        "after the worker, and the ratio is against the faster run."),
        (f"- 2: the host app inserts the rows with plain SQL (captured by the triggers) before the worker starts; "
        f"the naive client reads {r.naive_n:,} such rows and POSTs each on its own over one keep-alive "
        "connection, with no local bookkeeping at all."),
        (f"- 3: local databases filled by an in-process pull (`SyncEngine` + `RemoteClient` over HTTP) from a server "
        f"of {r.incr_big:,} and one of {r.incr_small:,} records; one worker per database, two warm-up syncs each, "
        f"then {r.repeat} measured syncs of the small database and {r.repeat} of the large one, each database's "
        "back to back (an idle dramatiq consumer polls Redis ever more slowly, up to its 1 s worker timeout, which "
        "would add up to a second of random pick-up delay to a sync that itself takes milliseconds); each sync = "
        f"{INCREMENTAL_EDITS} `UPDATE`s by the host app (autocommit), then a `both` sync."),
        ("- Times are from the request to the `completed` event and are what the targets are judged on; 'the run "
        "alone' is from the run's `started` event to its `completed` event, which leaves out the queue pick-up "
        "(dramatiq's idle polling) and the worker thread's first opening of the local store."),
        ("- 4: peak RSS = the larger of the highest VmRSS sampled every 50 ms and VmHWM, for each child process "
        "of `craftsync worker` (the dramatiq worker process that runs the sync), fresh worker per measurement."),
        "",
        table(r),
        "",
        "Targets:",
        "",
        (f"- Full pull: {r.pull_ratio:.2f}x the raw copy (target >= {TARGET_PULL_RATIO:g}x: "
        f"{verdict(r.pull_ratio >= TARGET_PULL_RATIO)})."),
        (f"- Push: {r.push_ratio:.1f}x one POST per record (target >= {TARGET_PUSH_RATIO:g}x: "
        f"{verdict(r.push_ratio >= TARGET_PUSH_RATIO)})."),
        (f"- Incremental sync: the {r.incr_big:,}-row database takes {r.incr_ratio:.2f}x the {r.incr_small:,}-row one "
        f"(target <= {TARGET_INCREMENTAL_RATIO:g}x: {verdict(r.incr_ratio <= TARGET_INCREMENTAL_RATIO)})."),
        (f"- Worker memory: at most {r.peak_max:.1f} MiB per worker process (target < {TARGET_RSS_MIB:g} MiB: "
        f"{verdict(r.peak_max < TARGET_RSS_MIB)}); N against 0.3N: pull {r.flat('pull'):.2f}x, push "
        f"{r.flat('push'):.2f}x ({'flat' if max(r.flat('pull'), r.flat('push')) <= FLAT_FACTOR else '**grows**'})."),
        (f"- Against the CouchDB reference ({COUCHDB_DOCS_PER_S:,.0f} docs/s at ~{COUCHDB_RSS_MIB:g} MiB, quoted in "
        f"issue 3, not measured here): pull {r.pull_rate / COUCHDB_DOCS_PER_S:.1f}x, push "
        f"{r.push_rate / COUCHDB_DOCS_PER_S:.1f}x its rate (aim {COUCHDB_AIM:g}x), at "
        f"{r.peak_max / COUCHDB_RSS_MIB:.0%} of its memory."),
    ]
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"


def raw_results(r: Results) -> dict[str, Any]:
    data = asdict(r)
    data["memory"] = {k: {"worker_peak_mib": m.worker_peak / MIB, "idle_mib": m.idle_peak / MIB,
                          "children": {str(pid): {"rss_peak": v[0], "vm_hwm": v[1], "cmd": m.names.get(pid)}
                                       for pid, v in m.children.items()},
                          "leader_hwm": m.leader_hwm} for k, m in r.memory.items()}
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, help="N, records pulled and pushed (default 100000; --quick 10000)")
    parser.add_argument("--naive", type=int, help="records of the one-POST-each baseline (default 2000; --quick 300)")
    parser.add_argument("--incr-rows", type=int, help="rows of the large incremental database (default 3N)")
    parser.add_argument("--repeat", type=int, help="measured incremental syncs per database (default 5; --quick 3)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite",
                        help="central database of the server (default sqlite)")
    parser.add_argument("--quick", action="store_true", help="a small smoke run; implies --no-doc")
    parser.add_argument("--redis-db", type=int, help="use this Redis database number (default: claim a free one)")
    parser.add_argument("--profile", type=Path, help="py-spy record the worker during the N pull and push into DIR")
    add_output_arguments(parser, DOC)
    args = parser.parse_args(argv)
    quick = args.quick
    args.records = args.records or (10_000 if quick else 100_000)
    args.naive = args.naive or (300 if quick else 2000)
    args.incr_rows = args.incr_rows or 3 * args.records
    args.repeat = args.repeat or (3 if quick else 5)
    args.small = max(1, int(args.records * 0.3))
    if args.incr_rows < args.records * 2.3 + args.naive:
        parser.error("--incr-rows must be at least 2.3N + --naive (the main server already holds that many)")
    if not CRAFTSYNC_SCRIPT.exists():
        parser.error(f"{CRAFTSYNC_SCRIPT} not found: install the project into .venv first")

    results = run(args)
    text = table(results)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(raw_results(results), indent=2, default=str))
    if not (args.no_doc or quick or args.profile):
        command = ".venv/bin/python tests/bench/bench_sync.py " + " ".join(argv if argv is not None else sys.argv[1:])
        notes = args.notes.read_text() if args.notes else None
        write_doc(args.doc, SECTION, section(results, command.strip(), notes))
        log(f"wrote the '{SECTION}' section of {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
