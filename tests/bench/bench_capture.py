"""Benchmark of change capture: what its triggers cost another program's writes, and how
fast those writes reach a device.

Run from the repository root::

    .venv/bin/python tests/bench/bench_capture.py [--backend sqlite|postgresql|mariadb|all]

For each backend, two twin databases are created here (SQLite files in a temporary
directory, or fresh databases ``craftsync_bench_<random>`` on the local PostgreSQL and
MariaDB, dropped at the end) and both migrated by the server's own code (``db.migrate``);
the twin then loses its triggers (``capture.drop_ddl`` for every entity). Every write is
plain SQL through the backend's own driver (``sqlite3``, psycopg, PyMySQL) on one connection
per database, as another program of the business writes: no SQLAlchemy, no CraftSync code.

1. Direct writes to ``customers``, with capture against the twin without it, the same
   statements with the same rows on both:

   a. single-row statements in autocommit: ``--writes`` INSERTs, then an UPDATE of each of
      those rows (each statement its own transaction);
   b. 1,000-row transactions (``--rows``), ``--transactions`` of each kind: an INSERT of the
      rows by ``executemany``, an INSERT by one multi-row ``VALUES`` statement, an UPDATE of
      1,000 rows by one statement (``WHERE id IN (...)``) and by ``executemany`` (one
      statement per row).

   Each kind runs ``--rounds`` times, on the two databases alternately (the captured one
   first in even rounds, the twin first in odd ones); the figure is the median rate of the
   rounds and the ratio is captured / without (target >= 0.5 for every kind).
2. The feed after a burst: ``craftsync server`` (waitress) in its own process on the
   captured database; a device's cursor is walked to the end first (which also numbers the
   changes of part 1), then ``--burst`` direct changes are written in 1,000-row
   transactions (half UPDATEs of rows the device already has, half INSERTs of new rows),
   and the device pulls over real HTTP from its cursor, ``limit=--page``, timed from the
   first request to the last page. The first page's request numbers every pending change
   (``repository.settle``), so that time is inside. The same walk again, with nothing left
   to number, is the same-run baseline. ElectricSQL's 4,000-6,000 row changes/s and
   PowerSync's 2,000-4,000 replicated operations/s per instance are their published
   figures, cited, not measured here.

SQLite connections of the writers use the server's settings (WAL, ``synchronous=NORMAL``):
with ``synchronous=FULL`` each autocommit statement waits for an fsync, which hides what the
triggers cost. The results are printed as a table and written into the
``## Change capture (issue 9)`` section of docs/BENCHMARKS.md (``--no-doc`` to skip).
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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

import httpx
from sqlalchemy.engine import make_url

from craftsync.server import capture
from craftsync.server.db import make_engine, migrate
from craftsync.server.mapping import NATIVE
from tests.bench.bench_common import (
    API_KEY,
    add_output_arguments,
    cpu_note,
    make_customers,
    mariadb_database,
    postgres_database,
    section_head,
    verdict,
    write_doc,
)
from tests.bench.bench_server import Server, check, cpu_delta, load_average, log, running_server

DOC = ROOT / "docs" / "BENCHMARKS.md"
SECTION = "## Change capture (issue 9)"
BACKENDS: Final = ("sqlite", "postgresql", "mariadb")

#: Target of issue 9: another program's writes keep at least half their speed.
TARGET_WRITE_RATIO: Final = 0.5
#: Published figures, cited: ElectricSQL's replication benchmark (writes that affect
#: shapes, 0.17-0.27 ms per change) and PowerSync's replication limit for small rows.
ANCHORS: Final = {
    "ElectricSQL": ((4000, 6000), "row changes/s", "https://electric-sql.com/docs/reference/benchmarks"),
    "PowerSync": ((2000, 4000), "replicated operations/s per instance",
                  "https://docs.powersync.com/resources/performance-and-limits"),
}

#: The columns another program writes when it adds a customer.
COLUMNS: Final = ("id", "name", "company", "email", "phone", "address", "city", "state", "zip", "country",
                  "notes", "created_at", "updated_at")


# --------------------------------------------------------------------------- databases


@dataclass
class Side:
    """One of the twins: its URL, and a connection of another program to it."""

    name: str  # "with" or "without" (capture)
    url: str
    writer: Writer | None = None


@contextmanager
def twin_databases(backend: str, workdir: Path) -> Iterator[tuple[Side, Side, str]]:
    """The captured database and its twin without triggers, both migrated; and a description."""
    with ExitStack() as stack:
        if backend == "sqlite":
            urls = [f"sqlite:///{workdir / name}.db" for name in ("with", "without")]
            description = f"SQLite {sqlite3.sqlite_version}, files in a temp dir (WAL)"
        else:
            fresh = postgres_database if backend == "postgresql" else mariadb_database
            made = [stack.enter_context(fresh("craftsync_bench_")) for _ in range(2)]
            urls = [url for url, _, _ in made]
            label = "PostgreSQL" if backend == "postgresql" else "MariaDB"
            description = f"{label} {made[0][2]} on 127.0.0.1, fresh databases {made[0][1]} and {made[1][1]}"
        for url in urls:
            engine = make_engine(url)
            migrate(engine)
            engine.dispose()
        with_, without = Side("with", urls[0]), Side("without", urls[1])
        strip_triggers(without.url)
        for side in (with_, without):
            side.writer = stack.enter_context(Writer.connect(side.url))
        yield with_, without, description


def strip_triggers(url: str) -> None:
    """Drop every entity's capture triggers (``capture.drop_ddl``)."""
    dialect = make_url(url).get_backend_name()
    with Writer.connect(url) as writer:
        for entity_map in NATIVE.values():
            for statement in capture.drop_ddl(entity_map, dialect):
                writer.execute(statement)


class Writer:
    """Another program's connection: plain SQL through the backend's driver, autocommit
    unless it says BEGIN."""

    def __init__(self, backend: str, connection: Any) -> None:
        self.backend = backend
        self.connection = connection
        self.cursor = connection.cursor()
        self.mark = "?" if backend == "sqlite" else "%s"

    @classmethod
    @contextmanager
    def connect(cls, url: str) -> Iterator[Writer]:
        u = make_url(url)
        backend = u.get_backend_name()
        if backend == "sqlite":
            connection: Any = sqlite3.connect(u.database or "", isolation_level=None)
            for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "busy_timeout = 30000"):
                connection.execute(f"PRAGMA {pragma}")
        elif backend == "postgresql":
            import psycopg

            connection = psycopg.connect(host=u.host, port=u.port or 5432, user=u.username,
                                         password=u.password, dbname=u.database, autocommit=True)
        else:
            import pymysql

            connection = pymysql.connect(host=u.host, port=u.port or 3306, user=u.username,
                                         password=u.password or "", database=u.database, autocommit=True)
        writer = cls("mariadb" if backend in ("mysql", "mariadb") else backend, connection)
        try:
            yield writer
        finally:
            connection.close()

    def execute(self, statement: str, params: Any = None) -> None:
        if params is None:  # no parameters: a '%' in the statement is not a placeholder
            self.cursor.execute(statement)
        else:
            self.cursor.execute(statement, params)

    def executemany(self, statement: str, rows: list[Any]) -> None:
        self.cursor.executemany(statement, rows)

    def scalar(self, statement: str) -> Any:
        self.cursor.execute(statement)
        return self.cursor.fetchone()[0]

    def marks(self, count: int) -> str:
        return ", ".join([self.mark] * count)


# --------------------------------------------------------------------------- statements


def insert_sql(writer: Writer, rows: int = 1) -> str:
    values = ", ".join([f"({writer.marks(len(COLUMNS))})"] * rows)
    return f"INSERT INTO customers ({', '.join(COLUMNS)}) VALUES {values}"


def update_one_sql(writer: Writer) -> str:
    m = writer.mark
    return f"UPDATE customers SET phone = {m}, updated_at = {m} WHERE id = {m}"


def update_set_sql(writer: Writer, rows: int) -> str:
    m = writer.mark
    return f"UPDATE customers SET notes = {m}, updated_at = {m} WHERE id IN ({writer.marks(rows)})"


def values(record: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(record[name] for name in COLUMNS)


@dataclass
class Round:
    """The rows and changes of one round, the same for both twins."""

    number: int
    singles: list[tuple[Any, ...]]
    many: list[list[tuple[Any, ...]]]  # batches inserted by executemany
    multi: list[list[tuple[Any, ...]]]  # batches inserted by one VALUES statement

    @classmethod
    def make(cls, number: int, args: argparse.Namespace) -> Round:
        records = [values(r) for r in make_customers(args.writes + 2 * args.transactions * args.rows,
                                                     seed=1000 + number)]
        singles, rest = records[: args.writes], records[args.writes :]
        batches = [rest[i : i + args.rows] for i in range(0, len(rest), args.rows)]
        return cls(number, singles, batches[: args.transactions], batches[args.transactions :])

    def stamp(self) -> str:
        return f"2026-12-{1 + self.number % 28:02d}T10:00:00.000Z"


def single_inserts(w: Writer, r: Round) -> int:
    statement = insert_sql(w)
    for row in r.singles:
        w.execute(statement, row)
    return len(r.singles)


def single_updates(w: Writer, r: Round) -> int:
    statement, stamp = update_one_sql(w), r.stamp()
    for i, row in enumerate(r.singles):
        w.execute(statement, (f"+1 555-{r.number:03d}-{i:04d}", stamp, row[0]))
    return len(r.singles)


def in_transaction(w: Writer, work: Callable[[], None]) -> None:
    w.execute("BEGIN")
    work()
    w.execute("COMMIT")


def insert_many(w: Writer, r: Round) -> int:
    statement = insert_sql(w)
    for batch in r.many:
        in_transaction(w, lambda: w.executemany(statement, batch))
    return sum(len(b) for b in r.many)


def insert_values(w: Writer, r: Round) -> int:
    for batch in r.multi:
        statement = insert_sql(w, len(batch))
        in_transaction(w, lambda: w.execute(statement, [v for row in batch for v in row]))
    return sum(len(b) for b in r.multi)


def update_statement(w: Writer, r: Round) -> int:
    for batch in r.many:
        statement = update_set_sql(w, len(batch))
        params = [f"Batch note {r.number}", r.stamp(), *(row[0] for row in batch)]
        in_transaction(w, lambda: w.execute(statement, params))
    return sum(len(b) for b in r.many)


def update_many(w: Writer, r: Round) -> int:
    statement, stamp = update_one_sql(w), r.stamp()
    for batch in r.multi:
        rows = [(f"+1 556-{r.number:03d}-{i:04d}", stamp, row[0]) for i, row in enumerate(batch)]
        in_transaction(w, lambda: w.executemany(statement, rows))
    return sum(len(b) for b in r.multi)


@dataclass(frozen=True)
class Kind:
    key: str
    shape: str  # "a" or "b"
    label: str
    run: Callable[[Writer, Round], int]


#: In this order within a round: each UPDATE changes rows its round inserted before.
KINDS: Final = (
    Kind("single_insert", "a", "INSERT, one row per statement, autocommit", single_inserts),
    Kind("single_update", "a", "UPDATE, one row per statement, autocommit", single_updates),
    Kind("insert_many", "b", "INSERT of 1,000 rows in one transaction (executemany)", insert_many),
    Kind("insert_values", "b", "INSERT of 1,000 rows in one transaction (one VALUES statement)", insert_values),
    Kind("update_statement", "b", "UPDATE of 1,000 rows in one transaction (one statement)", update_statement),
    Kind("update_many", "b", "UPDATE of 1,000 rows in one transaction (executemany)", update_many),
)


# --------------------------------------------------------------------------- measurements


@dataclass
class Rates:
    with_: list[float] = field(default_factory=list)
    without: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return statistics.median(self.with_) / statistics.median(self.without)

    def round_ratios(self) -> list[float]:
        return [w / o for w, o in zip(self.with_, self.without)]


@dataclass
class Walk:
    records: int = 0
    pages: int = 0
    seconds: float = 0.0
    first_page: float = 0.0
    other_pages: list[float] = field(default_factory=list)
    server_cpu: float | None = None

    @property
    def rate(self) -> float:
        return self.records / self.seconds


@dataclass
class Result:
    backend: str
    database: str
    rates: dict[str, Rates] = field(default_factory=dict)
    rows_written: int = 0
    burst: int = 0
    burst_seconds: float = 0.0
    feed: Walk = field(default_factory=Walk)
    again: Walk = field(default_factory=Walk)
    load: list[tuple[str, float]] = field(default_factory=list)

    def note_load(self, when: str) -> None:
        load = load_average()
        if load is not None:
            self.load.append((when, load[0]))

    def met(self, shape: str) -> bool:
        return all(self.rates[k.key].ratio >= TARGET_WRITE_RATIO for k in KINDS if k.shape == shape)


def measure_writes(with_: Side, without: Side, result: Result, args: argparse.Namespace) -> None:
    """Part 1: every kind of write, round after round, on the two twins alternately."""
    result.rates = {kind.key: Rates() for kind in KINDS}
    for number in range(args.rounds):
        work = Round.make(number, args)
        order = (with_, without) if number % 2 == 0 else (without, with_)
        for kind in KINDS:
            for side in order:
                assert side.writer is not None
                started = time.perf_counter()
                rows = kind.run(side.writer, work)
                rate = rows / (time.perf_counter() - started)
                (result.rates[kind.key].with_ if side is with_ else result.rates[kind.key].without).append(rate)
        log(f"[{result.backend}] round {number + 1}/{args.rounds}: "
            + ", ".join(f"{k.key} {result.rates[k.key].round_ratios()[-1]:.2f}" for k in KINDS))
    assert with_.writer is not None and without.writer is not None
    written = with_.writer.scalar("SELECT COUNT(*) FROM customers")
    # Every row written is in the change log of the twin with triggers (none folded it yet).
    logged = with_.writer.scalar("SELECT COUNT(DISTINCT row_key) FROM craftsync_customers_log")
    unlogged = without.writer.scalar("SELECT COUNT(*) FROM craftsync_customers_log")
    if logged != written or unlogged != 0 or without.writer.scalar("SELECT COUNT(*) FROM customers") != written:
        raise RuntimeError(f"capture: {logged} of {written} rows logged with triggers, {unlogged} without")
    result.rows_written = written


def walk(client: httpx.Client, server: Server, since: str, page: int) -> tuple[Walk, str, set[str]]:
    """A device's pull from ``since`` to the last page: the timing, the cursor, the ids."""
    result, ids, cursor = Walk(), set(), since
    cpu = server.cpu()
    started = time.perf_counter()
    while True:
        sent = time.perf_counter()
        body = check(client.get("/customers", params={"since": cursor, "limit": page}))
        took = time.perf_counter() - sent
        if result.pages == 0:
            result.first_page = took
        else:
            result.other_pages.append(took)
        result.pages += 1
        result.records += len(body["records"])
        ids.update(record["id"] for record in body["records"])
        cursor = body["next_cursor"]
        if not body["has_more"]:
            break
    result.seconds = time.perf_counter() - started
    result.server_cpu = cpu_delta(server, cpu)
    return result, cursor, ids


def measure_feed(side: Side, result: Result, args: argparse.Namespace, workdir: Path) -> None:
    """Part 2: a burst of direct writes, then a device's pull of them through the API."""
    writer = side.writer
    assert writer is not None
    updates, inserts = args.burst // 2, args.burst - args.burst // 2
    known = [row[0] for row in _fetch(writer, f"SELECT id FROM customers ORDER BY id LIMIT {updates}")]
    if len(known) < updates:  # a small run: seed the rows the burst updates
        seed = [values(r) for r in make_customers(updates - len(known), seed=7)]
        for start in range(0, len(seed), args.rows):
            in_transaction(writer, lambda: writer.executemany(insert_sql(writer), seed[start : start + args.rows]))
        known += [row[0] for row in seed]
    new = [values(r) for r in make_customers(inserts, seed=8)]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with running_server(side.url, workdir) as server, \
            httpx.Client(base_url=f"{server.url}/api", headers=headers, timeout=600) as client:
        log(f"[{result.backend}] server pid {server.service.pid}; walking the feed to its end ...")
        _, cursor, _ = walk(client, server, "0", args.page)  # numbers part 1's changes too
        log(f"[{result.backend}] burst: {updates} updates and {inserts} inserts, {args.rows} rows a transaction ...")
        stamp = "2026-12-02T09:00:00.000Z"
        started = time.perf_counter()
        for start in range(0, max(updates, inserts), args.rows):
            ids = known[start : start + args.rows]
            if ids:
                statement = update_set_sql(writer, len(ids))
                in_transaction(writer, lambda: writer.execute(statement, ["Burst", stamp, *ids]))
            rows = new[start : start + args.rows]
            if rows:
                in_transaction(writer, lambda: writer.executemany(insert_sql(writer), rows))
        result.burst_seconds = time.perf_counter() - started
        result.burst = args.burst
        result.note_load("after the burst")
        log(f"[{result.backend}] pulling the burst's changes from cursor {cursor} ...")
        result.feed, _, pulled = walk(client, server, cursor, args.page)
        expected = set(known) | {row[0] for row in new}
        if result.feed.records != args.burst or pulled != expected:
            raise RuntimeError(f"the feed held {result.feed.records} changes ({len(pulled & expected)} of the "
                               f"burst's {len(expected)}), expected {args.burst}")
        result.again, _, _ = walk(client, server, cursor, args.page)


def _fetch(writer: Writer, statement: str) -> list[Any]:
    writer.execute(statement)
    return list(writer.cursor.fetchall())


def run_backend(backend: str, args: argparse.Namespace) -> Result:
    with tempfile.TemporaryDirectory(prefix="craftsync-bench-") as tmp:
        workdir = Path(tmp)
        with twin_databases(backend, workdir) as (with_, without, description):
            result = Result(backend, description)
            log(f"[{backend}] {description}")
            result.note_load("before the writes")
            measure_writes(with_, without, result, args)
            result.note_load("after the writes")
            measure_feed(with_, result, args, workdir)
            result.note_load("after the pulls")
            return result


# --------------------------------------------------------------------------- reporting


def median_ms(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:.0f} ms" if times else "n/a"


def ratio_cell(rates: Rates) -> str:
    rounds = rates.round_ratios()
    return (f"{rates.ratio:.2f} ({min(rounds):.2f}-{max(rounds):.2f}), "
            f"{verdict(rates.ratio >= TARGET_WRITE_RATIO)}")


def anchors_cell(r: Result) -> str:
    return ", ".join(f"{r.feed.rate / high:.1f}x {name}'s {high:,}" for name, ((_, high), _, _) in ANCHORS.items())


def table(results: list[Result]) -> str:
    rows: list[tuple[str, ...]] = []
    for kind in KINDS:
        rows.append((f"1{kind.shape}. {kind.label}: records/s with / without capture",
                     *(f"{statistics.median(r.rates[kind.key].with_):,.0f} / "
                       f"{statistics.median(r.rates[kind.key].without):,.0f}" for r in results)))
        rows.append((f"    ratio with / without, median (rounds' range) (target >= {TARGET_WRITE_RATIO:g})",
                     *(ratio_cell(r.rates[kind.key]) for r in results)))
    rows += [
        ("2. burst of direct changes (1,000-row transactions, with capture), records/s",
         *(f"{r.burst / r.burst_seconds:,.0f} ({r.burst:,} in {r.burst_seconds:.1f} s)" for r in results)),
        ("   feed: the device's pull of the burst, changes/s (first request to last page)",
         *(f"{r.feed.rate:,.0f} ({r.feed.seconds:.1f} s, {r.feed.pages} pages)" for r in results)),
        ("   first page (folds and numbers every pending change) / the other pages, median",
         *(f"{r.feed.first_page * 1000:,.0f} ms / {median_ms(r.feed.other_pages)}" for r in results)),
        ("   same walk again, nothing pending, changes/s",
         *(f"{r.again.rate:,.0f} ({r.again.seconds:.1f} s)" for r in results)),
        ("   ratio first walk / walk again", *(f"{r.feed.rate / r.again.rate:.2f}" for r in results)),
        ("   server CPU during the first walk", *(cpu_note(r.feed.server_cpu, r.feed.seconds) for r in results)),
        ("   against the cited anchors (not measured here)", *(anchors_cell(r) for r in results)),
        ("load average (1 min) along the run",
         *(", ".join(f"{value:.2f} {when}" for when, value in r.load) for r in results)),
    ]
    header = ("measure", *(r.backend for r in results))
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def section(results: list[Result], args: argparse.Namespace, command: str) -> str:
    lines = [
        *section_head(SECTION, command, "; the writers, the server and this script share the machine"),
        "- Databases, per backend, twins both migrated by `db.migrate`, the second then stripped of its triggers "
        "(`capture.drop_ddl`; its change log stays, empty): " + "; ".join(f"{r.backend}: {r.database}" for r in results) + ".",
        "- Writers: plain SQL through the backend's own driver (`sqlite3`, psycopg, PyMySQL), one connection per "
        "database, as another program writes; SQLite connections with the server's settings (WAL, "
        "`synchronous=NORMAL`). Rows: customers with every field filled, time-ordered ids; both twins get the "
        "same rows and the same changes.",
        f"- 1a: {args.writes:,} single-row INSERTs, then an UPDATE of each (phone, updated_at), each its own "
        f"transaction; 1b: {args.transactions} transactions of {args.rows:,} rows of each kind. {args.rounds} "
        "rounds, the twins alternately (captured first in even rounds); median rate of the rounds, and the ratio "
        "of the medians (the rounds' own ratios in brackets). PyMySQL sends an INSERT's `executemany` as one "
        "multi-row statement; its UPDATE `executemany` is one statement per row.",
        f"- 2: `craftsync server` (waitress) in its own process, real HTTP from one `httpx.Client`; the device's "
        f"cursor first walked to the end (folding and numbering part 1's {results[0].rows_written:,} changes), then "
        f"{args.burst:,} direct changes ({args.burst // 2:,} UPDATEs of rows the device already had, by one "
        f"statement per {args.rows:,}, and {args.burst - args.burst // 2:,} INSERTs by `executemany`, "
        f"{args.rows:,} a transaction), then the device's pull from its cursor with `limit={args.page}`, timed "
        "from the first request to the last page; the pull checks that it got exactly the burst's records.",
        "- Anchors, cited from their publishers and not measured here: "
        + "; ".join(f"{name} {low:,}-{high:,} {what} ({url})" for name, ((low, high), what, url) in ANCHORS.items())
        + ". They are other systems on other machines: a scale, not a race.",
        "",
        table(results),
        "",
        "Targets:",
        "",
    ]
    for r in results:
        lines.append(
            f"- {r.backend}: single-row autocommit writes keep "
            f"{min(r.rates[k.key].ratio for k in KINDS if k.shape == 'a'):.2f} of their speed at worst (target >= "
            f"{TARGET_WRITE_RATIO:g}: {verdict(r.met('a'))}); 1,000-row transactions "
            f"{min(r.rates[k.key].ratio for k in KINDS if k.shape == 'b'):.2f} (target >= "
            f"{TARGET_WRITE_RATIO:g}: {verdict(r.met('b'))}); a device pulls a burst's changes at "
            f"{r.feed.rate:,.0f}/s."
        )
    if args.notes:
        lines += ["", args.notes.read_text().strip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=(*BACKENDS, "all"), default="all")
    parser.add_argument("--writes", type=int, default=2000, help="single-row INSERTs (and UPDATEs) a round")
    parser.add_argument("--rows", type=int, default=1000, help="rows of a transaction (default 1000)")
    parser.add_argument("--transactions", type=int, default=5, help="transactions of each kind a round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every kind (median)")
    parser.add_argument("--burst", type=int, default=50_000, help="direct changes before the pull")
    parser.add_argument("--page", type=int, default=5000, help="pull page size (default 5000, the worker's)")
    add_output_arguments(parser, DOC)
    args = parser.parse_args(argv)

    backends = list(BACKENDS) if args.backend == "all" else [args.backend]
    results = [run_backend(backend, args) for backend in backends]
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    if not args.no_doc:
        given = list(argv if argv is not None else sys.argv[1:])
        for flag in ("--json", "--doc", "--notes"):  # where files go is not part of the measurement
            while flag in given and given.index(flag) + 1 < len(given):
                del given[given.index(flag) : given.index(flag) + 2]
        command = ".venv/bin/python tests/bench/bench_capture.py " + " ".join(given)
        write_doc(args.doc, SECTION, section(results, args, command.strip()))
        log(f"wrote the '{SECTION}' section of {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
