"""The change feed under concurrent writers (spec §5, §6.10), on SQLite, PostgreSQL and MariaDB.

Eight writers commit changes to customers at once against a real ``craftsync server``
process: four push through the API over HTTP, four are another program writing the central
database with plain SQL (``tests.support.direct``), in transactions of random length (some
held open for a while, some over several rows; inserts, updates, soft and hard deletes).
Meanwhile a reader pages through ``GET /api/customers?since=<cursor>&limit=<small>`` the
whole time, as a device does, and the server is restarted half-way, the reader going on from
its last cursor.

At the end: every change that committed reached the reader at its final version (the
bookkeeping table, read raw, says which versions those are), nothing it had applied was
served again without a higher version, and what it holds is what the central database
stores.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
from sqlalchemy import bindparam, text
from sqlalchemy.exc import DBAPIError

from craftsync.contract.records import data_fields
from tests.support.api import API_KEY, customer
from tests.support.direct import Direct, canonical_now
from tests.support.feed import FeedReader, restart, serve
from tests.support.sync import central_rows

#: Seconds the writers run before the restart, and again after it.
PHASE_S: Final = 6.0
API_WRITERS: Final = 4
DIRECT_WRITERS: Final = 4
#: The reader's page size: small, so that it pages often.
PAGE: Final = 7
#: The longest a direct transaction is held open before it commits.
MAX_HOLD_S: Final = 0.8
#: How long another program pauses between its transactions (on SQLite, where a writer holds
#: the whole file, one that never pauses starves every other writer of the lock).
THINK_S: Final = (0.05, 0.3)
#: The versions a transaction's writes make, read inside it from the bookkeeping the triggers keep.
_VERSIONS: Final = text("SELECT id, version FROM craftsync_customers WHERE id IN :ids").bindparams(
    bindparam("ids", expanding=True))


@dataclass
class Run:
    """What the threads share: the server's URL, the ids they may edit, what they saw commit."""

    url: str
    up: threading.Event = field(default_factory=threading.Event)  # clear while the server restarts
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: list[str] = field(default_factory=list)
    #: (id, version, writer) of every change a writer saw commit
    committed: list[tuple[str, int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: (writer, outcome) -> how many: push results, kinds of direct transaction, "held open", "refused"
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)

    def count(self, writer: str, *outcomes: str) -> None:
        with self.lock:
            self.outcomes.update((writer, outcome) for outcome in outcomes)

    def total(self, outcome: str) -> int:
        return sum(n for (_, seen), n in self.outcomes.items() if seen == outcome)

    def add(self, writer: str, changes: list[tuple[str, int]], *, new: bool = False) -> None:
        with self.lock:
            self.committed.extend((rid, version, writer) for rid, version in changes)
            if new:
                self.ids.extend(rid for rid, _ in changes)

    def pick(self, rng: random.Random, count: int) -> list[str]:
        with self.lock:
            return sorted(set(rng.sample(self.ids, min(count, len(self.ids)))))


def _api_request(run: Run, http: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request, sent again (the same one) when the server is down for its restart."""
    deadline = time.monotonic() + 60
    while True:
        run.up.wait(60)
        try:
            response = http.request(method, path, **kwargs)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text[:300]}"
        return response


def _api_writer(run: Run, name: str, seed: int) -> None:
    """Push creates, edits and soft deletes through the API, each with the version it read."""
    rng = random.Random(seed)
    with httpx.Client(base_url=run.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as http:
        while not run.stop.is_set():
            if rng.random() < 0.4:
                records = [customer(city=name) for _ in range(rng.randint(1, 4))]
            else:
                records = []
                for rid in run.pick(rng, rng.randint(1, 3)):
                    current = _api_request(run, http, "GET", f"/customers/{rid}").json()
                    if current["deleted_at"] is not None:
                        continue
                    change = {"deleted_at": canonical_now()} if rng.random() < 0.1 else {"phone": secrets.token_hex(4)}
                    records.append({"id": rid, **change, "base_version": current["version"]})
            if not records:
                continue
            results = _api_request(run, http, "POST", "/customers", json={"records": records}).json()["results"]
            # A retried batch the server had applied is answered unchanged, with its version.
            run.count(name, *(r["status"] for r in results))
            done = [(r["id"], r["version"]) for r in results if r["status"] in ("created", "updated", "unchanged")]
            run.add(name, done, new=all(r.get("base_version") is None for r in records))


def _direct_writer(run: Run, direct: Direct, name: str, seed: int) -> None:
    """Another program's transactions: inserts of several rows, edits, soft and hard deletes,
    some held open for a while before they commit."""
    rng = random.Random(seed)
    while not run.stop.wait(rng.uniform(*THINK_S)):  # a person or a program, not a loop flat out
        kind = rng.choice(("insert", "insert", "update", "update", "update", "soft delete", "delete"))
        transaction = direct.begin()
        try:
            touched = []
            if kind == "insert":
                for _ in range(rng.randint(1, 4)):
                    rid = secrets.token_hex(16)
                    transaction.execute("INSERT INTO customers (id, name) VALUES (:id, :name)", id=rid, name=name)
                    touched.append(rid)
                    time.sleep(rng.choice((0, 0, rng.uniform(0, 0.2))))
            else:
                for rid in run.pick(rng, 1 if "delete" in kind else rng.randint(1, 3)):
                    statement = {
                        "update": "UPDATE customers SET city = :value WHERE id = :id",
                        "soft delete": "UPDATE customers SET deleted_at = :value WHERE id = :id AND deleted_at IS NULL",
                        "delete": "DELETE FROM customers WHERE id = :id",
                    }[kind]
                    value = canonical_now() if kind == "soft delete" else f"{name} {secrets.token_hex(2)}"
                    if transaction.execute(statement, value=value, id=rid):
                        touched.append(rid)
            # The versions this transaction's commit makes, as the triggers keep them.
            versions = [(row[0], row[1]) for row in transaction.conn.execute(_VERSIONS, {"ids": touched})] if touched else []
            held = rng.random() < 0.4
            if held:
                time.sleep(rng.uniform(0, MAX_HOLD_S))
            transaction.commit()
        except DBAPIError:  # a deadlock or lock wait the database settled by refusing this one
            transaction.rollback()
            run.count(name, "refused")
            continue
        run.count(name, kind, *(["held open"] if held else []))
        run.add(name, versions, new=kind == "insert")


def _reader(run: Run, reader: FeedReader, written: threading.Event, drained: threading.Event) -> None:
    """Page through the feed the whole time; once every writer has finished (``written``),
    read to its end."""
    with httpx.Client(base_url=run.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as http:
        while True:
            finishing = written.is_set()
            page = _api_request(run, http, "GET", "/customers", params={"since": reader.cursor, "limit": PAGE}).json()
            reader.apply(page)
            if finishing and not page["has_more"]:
                drained.set()
                return
            if not page["has_more"]:
                time.sleep(0.01)


def _thread(run: Run, name: str, target: Callable[..., None], *args: Any) -> threading.Thread:
    """Run ``target(run, *args)`` on a thread; what it raises fails the test, and stops the writers."""
    def guarded() -> None:
        try:
            target(run, *args)
        except BaseException as exc:  # noqa: BLE001  (reported by the test)
            run.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            run.stop.set()

    thread = threading.Thread(target=guarded, name=name, daemon=True)
    thread.start()
    return thread


def test_a_feed_reader_misses_no_committed_change_and_sees_none_twice_among_eight_writers_and_a_restart(
    database_url: str, tmp_path: Path
) -> None:
    # Given a server process with 40 customers, half pushed through the API, half inserted directly
    server = serve(tmp_path, database_url)
    direct = Direct(database_url)
    run = Run(server.url)
    run.up.set()
    seeded = server.push("customers", [customer(city="seed") for _ in range(20)])
    run.add("seed", [(r["id"], r["version"]) for r in seeded], new=True)
    run.add("seed", [(direct.insert("customers", name="seed"), 1) for _ in range(20)], new=True)
    reader, written, drained = FeedReader("customers"), threading.Event(), threading.Event()
    try:
        # When four API writers and four direct writers commit changes while a reader pages the feed
        writers = [_thread(run, f"api-{n}", _api_writer, f"api-{n}", n) for n in range(API_WRITERS)]
        writers += [_thread(run, f"sql-{n}", _direct_writer, direct, f"sql-{n}", 100 + n) for n in range(DIRECT_WRITERS)]
        reading = _thread(run, "reader", _reader, reader, written, drained)
        run.stop.wait(PHASE_S)
        # ... and the server restarts half-way, the reader and the API writers going on from where they were
        run.up.clear()
        before_restart = (reader.cursor, reader.pages, len(run.committed))
        server = restart(tmp_path, server, run=1)
        run.up.set()
        run.stop.wait(PHASE_S)
        run.stop.set()
        for thread in writers:
            thread.join(60)
        written.set()
        reading.join(60)
        assert not run.errors, run.errors
        assert drained.is_set(), "the reader did not reach the end of the feed"

        # Then every record's last change reached the reader, at the version the central database holds
        book = direct.book("customers")
        missed = {rid: (reader.seen.get(rid, {}).get("version"), booked.version) for rid, booked in book.items()
                  if reader.seen.get(rid, {}).get("version") != booked.version}
        assert not missed, f"{len(missed)} records' last change not seen (seen, stored): {dict(list(missed.items())[:5])}"
        assert set(reader.seen) == set(book)
        # ... and so did every change a writer saw commit
        behind = [(rid, v, who) for rid, v, who in run.committed if reader.seen[rid]["version"] < v]
        assert not behind, f"committed changes the reader never reached: {behind[:5]}"
        # ... what the reader holds is what the central database stores, a deleted row as a tombstone
        stored = central_rows(database_url, "customers", live_only=False)
        fields = data_fields("customers")
        differ = [rid for rid, row in stored.items() if {n: reader.seen[rid][n] for n in fields} != row]
        assert not differ, f"{len(differ)} records differ, e.g. {reader.seen[differ[0]]} != {stored[differ[0]]}"
        gone = set(book) - set(stored)
        assert all(reader.seen[rid]["deleted_at"] == book[rid].deleted_at for rid in gone)
        # ... its cursor is the last position handed out, and a fresh read of the whole feed after
        # the restart serves each record once
        with direct.engine.connect() as conn:
            counter = conn.execute(text("SELECT value FROM craftsync_counters WHERE name = 'customers'")).scalar_one()
        assert int(reader.cursor) == counter
        whole = FeedReader("customers")
        while True:
            page = server.http.get("/customers", params={"since": whole.cursor, "limit": 5000}).json()
            whole.apply(page)
            if not page["has_more"]:
                break
        assert {rid: r["version"] for rid, r in whole.seen.items()} == {rid: b.version for rid, b in book.items()}
        assert whole.records == len(book)
        # ... and the run was the one described: every writer committed, transactions were held open,
        # changes committed on both sides of the restart, and the reader paged all along
        writers_seen = {who for _, _, who in run.committed}
        assert writers_seen >= {f"api-{n}" for n in range(API_WRITERS)} | {f"sql-{n}" for n in range(DIRECT_WRITERS)}, (
            sorted(run.outcomes.items()))
        cursor_at_restart, pages_at_restart, committed_at_restart = before_restart
        assert run.total("held open") >= 5 and len(run.committed) > committed_at_restart + 20, sorted(run.outcomes.items())
        assert int(cursor_at_restart) > 0 and reader.pages > pages_at_restart + 10, (before_restart, reader.pages)
        print(f"{len(run.committed)} changes committed, {len(gone)} rows deleted, {run.total('held open')} held open, "
              f"{run.total('refused')} refused; the reader read {reader.pages} pages, {reader.records} records")
    finally:
        run.stop.set()
        run.up.set()
        server.http.close()
        server.service.stop()
        direct.close()
