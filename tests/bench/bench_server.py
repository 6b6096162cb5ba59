"""Benchmark of the reference server over real HTTP: batched push, naive push, keyset pull.

Run from the repository root::

    .venv/bin/python tests/bench/bench_server.py [--backend sqlite|postgresql|both] [--records 100000]

For each backend it starts ``craftsync server`` (waitress, 8 threads) as a subprocess on a
free loopback port, against a fresh database (an SQLite file in a temporary directory, or a
PostgreSQL database ``craftsync_bench_<random>`` that is created and dropped here), and
drives it with one ``httpx.Client``:

a. load: ``--records`` customers pushed in batches of ``--batch`` (records/s);
b. naive baseline, same server, same run: ``--naive`` new customers, one POST each
   (records/s), and the ratio batched/naive (target >= 30x);
c. pull: a walk of every record with ``limit=--page`` from cursor 0 to the end (records/s),
   and the time of the first page against a page near the end (median of 5 each), whose
   ratio shows whether paging is keyset (target <= 1.5).

The server runs in its own process so that it does not share the client's GIL. Request
bodies are JSON-encoded before the clock starts, so the timed part is the HTTP round trip
and the server's work. The results are printed as a table and written into the
``## Server (issue 2)`` section of docs/BENCHMARKS.md (``--no-doc`` to skip).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

import httpx

from tests.bench.bench_common import (
    API_KEY,
    add_output_arguments,
    cpu_note,
    cpu_seconds,
    make_customers,
    postgres_database,
    section_head,
    verdict,
    write_doc,
)
from tests.support.process import Service, clean_env, free_port, start_server

DOC = ROOT / "docs" / "BENCHMARKS.md"
SECTION = "## Server (issue 2)"

#: Targets of issue 2.
TARGET_PUSH_RATIO = 30.0
TARGET_PAGE_RATIO = 1.5


def encode(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- server


@dataclass
class Server:
    url: str
    service: Service

    def cpu(self) -> float | None:
        return cpu_seconds(self.service.pid)


@contextmanager
def running_server(database_url: str, workdir: Path) -> Iterator[Server]:
    """``craftsync server`` in a subprocess on a free port, until the block ends."""
    port = free_port()
    # No REDIS_URL (clean_env drops it): rate-limit counters in memory, one server process.
    env = clean_env(workdir, DATABASE_URL=database_url, API_KEYS=API_KEY, RATE_LIMIT="1000000/minute")
    service = start_server(env, port=port, log=workdir / "server.log", cwd=workdir, timeout=60)
    try:
        yield Server(f"http://127.0.0.1:{port}", service)
    finally:
        service.stop(timeout=15)


@contextmanager
def database(backend: str, workdir: Path) -> Iterator[tuple[str, str]]:
    """A fresh central database for ``backend``: its URL and a description."""
    if backend == "sqlite":
        path = workdir / "central.db"
        yield f"sqlite:///{path}", f"SQLite {sqlite3.sqlite_version}, file in a temp dir (WAL)"
        return
    with postgres_database("craftsync_bench_") as (url, name, version):
        yield url, f"PostgreSQL {version} on 127.0.0.1, fresh database {name}"


# --------------------------------------------------------------------------- measurements


@dataclass
class Result:
    backend: str
    database: str
    records: int
    batch: int
    naive_n: int
    page: int
    record_bytes: float = 0.0
    push_seconds: float = 0.0
    push_server_cpu: float | None = None
    batch_times: list[float] = field(default_factory=list)
    naive_seconds: float = 0.0
    naive_server_cpu: float | None = None
    naive_times: list[float] = field(default_factory=list)
    pull_records: int = 0
    pull_pages: int = 0
    pull_seconds: float = 0.0
    pull_server_cpu: float | None = None
    first_page: list[float] = field(default_factory=list)
    late_page: list[float] = field(default_factory=list)
    late_cursor: str = ""
    load_before: tuple[float, float, float] | None = None
    load_after: tuple[float, float, float] | None = None

    @property
    def push_rate(self) -> float:
        return self.records / self.push_seconds

    @property
    def naive_rate(self) -> float:
        return self.naive_n / self.naive_seconds

    @property
    def push_ratio(self) -> float:
        return self.push_rate / self.naive_rate

    @property
    def pull_rate(self) -> float:
        return self.pull_records / self.pull_seconds

    @property
    def first_ms(self) -> float:
        return statistics.median(self.first_page) * 1000

    @property
    def late_ms(self) -> float:
        return statistics.median(self.late_page) * 1000

    @property
    def page_ratio(self) -> float:
        return self.late_ms / self.first_ms


def check(response: httpx.Response, expected: int = 200) -> dict[str, Any]:
    if response.status_code != expected:
        raise RuntimeError(f"{response.request.method} {response.request.url} -> {response.status_code}: {response.text[:500]}")
    return response.json()


def cpu_delta(server: Server, before: float | None) -> float | None:
    after = server.cpu()
    return None if before is None or after is None else after - before


def run_backend(backend: str, args: argparse.Namespace) -> Result:
    with tempfile.TemporaryDirectory(prefix="craftsync-bench-") as tmp:
        workdir = Path(tmp)
        with database(backend, workdir) as (url, description), running_server(url, workdir) as server:
            result = Result(backend, description, args.records, args.batch, args.naive, args.page)
            log(f"[{backend}] {description}; server pid {server.service.pid} at {server.url}")
            headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
            result.load_before = load_average()
            with httpx.Client(base_url=f"{server.url}/api", headers=headers, timeout=600) as client:
                measure_push(client, server, result, args)
                measure_naive(client, server, result, args)
                measure_pull(client, server, result, args)
            result.load_after = load_average()
            return result


def measure_push(client: httpx.Client, server: Server, result: Result, args: argparse.Namespace) -> None:
    records = list(make_customers(args.records, seed=1))
    result.record_bytes = statistics.fmean(len(encode(r)) for r in records[:1000])
    bodies = [encode({"records": records[i : i + args.batch]}) for i in range(0, len(records), args.batch)]
    del records
    log(f"[{result.backend}] pushing {args.records} records in {len(bodies)} batches of {args.batch} "
        f"(~{result.record_bytes:.0f} bytes each) ...")
    cpu = server.cpu()
    started = time.perf_counter()
    for number, body in enumerate(bodies, 1):
        sent = time.perf_counter()
        results = check(client.post("/customers", content=body))["results"]
        result.batch_times.append(time.perf_counter() - sent)
        bad = [r for r in results if r["status"] != "created"]
        if bad:
            raise RuntimeError(f"batch {number}: {len(bad)} records not created, e.g. {bad[0]}")
        if number % 20 == 0:
            log(f"  {number * args.batch} records, {number * args.batch / (time.perf_counter() - started):.0f}/s")
    result.push_seconds = time.perf_counter() - started
    result.push_server_cpu = cpu_delta(server, cpu)


def measure_naive(client: httpx.Client, server: Server, result: Result, args: argparse.Namespace) -> None:
    bodies = [encode(r) for r in make_customers(args.naive, seed=2)]
    log(f"[{result.backend}] naive baseline: {args.naive} records, one POST each ...")
    cpu = server.cpu()
    started = time.perf_counter()
    for body in bodies:
        sent = time.perf_counter()
        answer = check(client.post("/customers", content=body), 201)
        result.naive_times.append(time.perf_counter() - sent)
        if answer["status"] != "created":
            raise RuntimeError(f"single push: {answer}")
    result.naive_seconds = time.perf_counter() - started
    result.naive_server_cpu = cpu_delta(server, cpu)


def measure_pull(client: httpx.Client, server: Server, result: Result, args: argparse.Namespace) -> None:
    total = args.records + args.naive
    late_at = max(0, min(args.late_at, total - args.page))
    log(f"[{result.backend}] pulling {total} records, {args.page} a page ...")
    cursor, pulled, pages, late_cursor = "0", 0, 0, None
    cpu = server.cpu()
    started = time.perf_counter()
    while True:
        if pulled <= late_at:  # the last page boundary at or before late_at
            late_cursor = cursor
        page = check(client.get("/customers", params={"since": cursor, "limit": args.page}))
        pulled += len(page["records"])
        pages += 1
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    result.pull_seconds = time.perf_counter() - started
    result.pull_server_cpu = cpu_delta(server, cpu)
    result.pull_records, result.pull_pages = pulled, pages
    if pulled != total:
        raise RuntimeError(f"pulled {pulled} records, expected {total}")
    assert late_cursor is not None
    result.late_cursor = late_cursor
    # The first page and a page near the end, alternately, so that drift hits both alike.
    for _ in range(args.repeat):
        for cursor, times in (("0", result.first_page), (late_cursor, result.late_page)):
            started = time.perf_counter()
            page = check(client.get("/customers", params={"since": cursor, "limit": args.page}))
            times.append(time.perf_counter() - started)
            if len(page["records"]) != args.page:
                raise RuntimeError(f"page at {cursor} held {len(page['records'])} records")


# --------------------------------------------------------------------------- reporting


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ms_pair(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:.1f} / {max(times) * 1000:.0f} ms" if times else "n/a"


def halves(result: Result) -> str:
    """Throughput of the first and second half of the batches: does the load slow as the table grows?"""
    times = result.batch_times
    if len(times) < 2:
        return "n/a"
    half = len(times) // 2
    first, second = times[:half], times[half:]
    return f"{len(first) * result.batch / sum(first):,.0f} / {len(second) * result.batch / sum(second):,.0f}"


def load_pair(result: Result) -> str:
    if result.load_before is None or result.load_after is None:
        return "n/a"
    return f"{result.load_before[0]:.2f} / {result.load_after[0]:.2f}"


def table(results: list[Result]) -> str:
    names = [r.backend for r in results]
    rows: list[tuple[str, ...]] = [
        ("a. batched push, records/s", *(f"{r.push_rate:,.0f}" for r in results)),
        ("   (time for all records)", *(f"{r.push_seconds:.1f} s" for r in results)),
        ("   one batch: median / slowest", *(ms_pair(r.batch_times) for r in results)),
        ("   records/s in the first / second half of the load", *(halves(r) for r in results)),
        ("b. naive push (1 POST per record), records/s", *(f"{r.naive_rate:,.0f}" for r in results)),
        ("   one POST: median / slowest", *(ms_pair(r.naive_times) for r in results)),
        (f"   ratio batched / naive (target >= {TARGET_PUSH_RATIO:g}x)",
         *(f"{r.push_ratio:.1f}x, {verdict(r.push_ratio >= TARGET_PUSH_RATIO)}" for r in results)),
        ("c. pull walk, records/s", *(f"{r.pull_rate:,.0f}" for r in results)),
        ("   (time for all pages)", *(f"{r.pull_seconds:.1f} s, {r.pull_pages} pages" for r in results)),
        ("   first page, median of 5", *(f"{r.first_ms:.1f} ms" for r in results)),
        ("   late page, median of 5", *(f"{r.late_ms:.1f} ms" for r in results)),
        (f"   ratio late / first (target <= {TARGET_PAGE_RATIO:g})",
         *(f"{r.page_ratio:.2f}, {verdict(r.page_ratio <= TARGET_PAGE_RATIO)}" for r in results)),
        ("server CPU during batched push", *(cpu_note(r.push_server_cpu, r.push_seconds) for r in results)),
        ("server CPU during naive push", *(cpu_note(r.naive_server_cpu, r.naive_seconds) for r in results)),
        ("server CPU during pull walk", *(cpu_note(r.pull_server_cpu, r.pull_seconds) for r in results)),
        ("load average (1 min) before / after", *(load_pair(r) for r in results)),
    ]
    header = ("measure", *names)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def section(results: list[Result], args: argparse.Namespace, command: str) -> str:
    r0 = results[0]
    lines = [
        *section_head(SECTION, command, "; client and server share the machine"),
        "- Server: `craftsync server` (waitress, 8 threads) in its own process on a free loopback port; "
        "client: one `httpx.Client` (keep-alive) in the benchmark process. Request bodies are encoded "
        "before the clock starts.",
        f"- Records: customers with every field filled (~{r0.record_bytes:.0f} bytes of JSON each), "
        "time-ordered ids (milliseconds, then 80 random bits).",
        f"- a. load: {r0.records:,} records pushed in batches of {r0.batch:,}; "
        f"b. naive baseline: {r0.naive_n:,} more records, one POST each, to the same server right after; "
        f"c. pull: every record ({r0.records + r0.naive_n:,}) walked with `limit={r0.page}` from cursor 0 "
        f"to the end, then the first page and the page after record {args.late_at:,} fetched "
        f"{args.repeat} times each, alternately, median taken.",
        "- Databases: " + "; ".join(f"{r.backend}: {r.database}" for r in results) + ".",
        "",
        table(results),
        "",
        "Targets:",
        "",
    ]
    for r in results:
        lines.append(
            f"- {r.backend}: batched push is {r.push_ratio:.1f}x the naive baseline (target >= "
            f"{TARGET_PUSH_RATIO:g}x: {verdict(r.push_ratio >= TARGET_PUSH_RATIO)}); the late page takes "
            f"{r.page_ratio:.2f}x the first (target <= {TARGET_PAGE_RATIO:g}: "
            f"{verdict(r.page_ratio <= TARGET_PAGE_RATIO)})."
        )
    if args.notes:
        lines += ["", args.notes.read_text().strip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--records", type=int, default=100_000, help="records to load (default 100000)")
    parser.add_argument("--batch", type=int, default=1000, help="records per batched POST (default 1000)")
    parser.add_argument("--naive", type=int, default=2000, help="records of the one-POST-each baseline (default 2000)")
    parser.add_argument("--page", type=int, default=1000, help="pull page size (default 1000)")
    parser.add_argument("--late-at", type=int, default=99_000, help="record after which the late page starts")
    parser.add_argument("--repeat", type=int, default=5, help="fetches of the first and the late page (median)")
    add_output_arguments(parser, DOC)
    args = parser.parse_args(argv)
    if args.late_at >= args.records + args.naive:
        parser.error("--late-at must be below the number of records")

    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = [run_backend(backend, args) for backend in backends]
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))
    if not args.no_doc:
        given = list(argv if argv is not None else sys.argv[1:])
        for flag in ("--json", "--doc", "--notes"):  # where files go is not part of the measurement
            while flag in given and given.index(flag) + 1 < len(given):
                del given[given.index(flag) : given.index(flag) + 2]
        command = ".venv/bin/python tests/bench/bench_server.py " + " ".join(given)
        write_doc(args.doc, SECTION, section(results, args, command.strip()))
        log(f"wrote the '{SECTION}' section of {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
