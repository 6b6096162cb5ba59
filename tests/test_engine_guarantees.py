"""The sync guarantees of spec §4 and §6, one test (or more) each, named after them.

The engine talks to the real reference server: in-process through ``httpx.WSGITransport``
for most tests, over real HTTP (waitress on a loopback port) for the last ones.
"""

from __future__ import annotations

import sqlite3
import threading
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl
from typing import Any

import httpx
import pytest
import waitress
from flask import Flask

from tests.support.api import API_KEY, new_id
from tests.support.device import Device
from tests.support.sync import remote_for, server_live
from craftsync.worker.conflicts import open_conflicts, resolve
from craftsync.worker.engine import SyncOptions
from craftsync.worker.remote import RemoteClient, RemoteSettings
from craftsync.worker.store import LocalStore


def _one(device: Device, entity: str = "customers") -> dict[str, Any]:
    (record,) = device.live(entity).values()
    return record


def _shared_customer(a: Device, b: Device, **fields: Any) -> str:
    """A customer made on A and synced to B; returns its id."""
    names = ", ".join(["name", *fields])
    marks = ", ".join("?" * (1 + len(fields)))
    a.sql(f"INSERT INTO customers ({names}) VALUES ({marks})", "Ann", *fields.values())
    a.sync("customers")
    b.sync("customers")
    return _one(b)["id"]


# -- §4 the local database ---------------------------------------------------------------


def test_ids_default_to_time_ordered_128_bit_hex(devices: tuple[Device, Device]) -> None:
    # Given a host app inserting rows without ids
    a, _ = devices
    for n in range(50):
        a.sql("INSERT INTO customers (name) VALUES (?)", f"c{n}")
        time.sleep(0.002)
    # Then each id is 32 hex digits, and rows made later sort later
    ids = [row["id"] for row in a.sql("SELECT id FROM customers ORDER BY rowid")]
    assert [i for i in ids if re.fullmatch(r"[0-9a-f]{32}", i) is None] == []
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert int(ids[0][:12], 16) == pytest.approx(time.time() * 1000, abs=60_000)


def test_host_app_inserts_updates_and_deletes_are_captured(devices: tuple[Device, Device], reference_app: Flask) -> None:
    # Given three customers written by the host app and synced
    a, _ = devices
    for name in ("keep", "soft", "hard"):
        a.sql("INSERT INTO customers (name) VALUES (?)", name)
    a.sync("customers")
    # When the host app edits one, soft-deletes one and hard-deletes one, with plain SQL
    a.sql("UPDATE customers SET city = 'Lyon' WHERE name = 'keep'")
    a.sql("UPDATE customers SET deleted_at = '2026-11-25T09:00:00Z' WHERE name = 'soft'")
    a.sql("DELETE FROM customers WHERE name = 'hard'")
    assert a.store.counts("customers")["pending"] == 3
    a.sync("customers")
    # Then the server holds the edit and neither deleted record is live there
    assert [(r["name"], r["city"]) for r in server_live(reference_app, "customers").values()] == [("keep", "Lyon")]


def test_the_engines_own_writes_are_not_echoed_back_as_local_changes(devices: tuple[Device, Device]) -> None:
    # Given records that device B pulled from the server
    a, b = devices
    for n in range(20):
        a.sql("INSERT INTO customers (name) VALUES (?)", f"c{n}")
    a.sync("customers")
    b.sync("customers")
    # Then B has nothing to push, and a second sync transfers nothing
    assert b.store.counts("customers")["pending"] == 0
    again = b.sync("customers")
    assert (again.pushed, again.pulled) == (0, 0)


def test_an_existing_host_database_keeps_its_rows_and_pushes_them(tmp_path: Path, reference_app: Flask) -> None:
    # Given a host database made before CraftSync, with its own customers table and rows
    path = tmp_path / "legacy.db"
    legacy = sqlite3.connect(path)
    legacy.execute("CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT, email TEXT, extra_col TEXT)")
    legacy.executemany(
        "INSERT INTO customers (id, name, email, extra_col) VALUES (?, ?, ?, ?)",
        [(new_id(), f"Old {n}", f"o{n}@example.com", "kept") for n in range(5)],
    )
    legacy.commit()
    legacy.close()
    # When CraftSync opens it and syncs
    device = Device.in_process(path, reference_app)
    result = device.sync("customers")
    # Then every row is kept (with the host's own column), and all were pushed
    assert result.pushed == 5
    assert len(device.sql("SELECT * FROM customers WHERE extra_col = 'kept'")) == 5
    assert sorted(r["name"] for r in server_live(reference_app, "customers").values()) == [f"Old {n}" for n in range(5)]
    device.close()


# -- §6.1 push in batches, pull in pages from a persisted cursor ----------------------------


def test_push_goes_in_batches_and_pull_resumes_from_its_cursor(tmp_path: Path, reference_app: Flask) -> None:
    # Given a server that counts the requests it gets, and 250 local customers
    calls: list[str] = []

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        calls.append(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
        return reference_app(environ, start_response)

    a = Device.in_process(tmp_path / "a.db", reference_app)
    a.engine.remote = remote_for(counting)  # type: ignore[arg-type]
    a.sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 250) "
          "INSERT INTO customers (name) SELECT 'c' || i FROM n")
    # When it pushes in batches of 100
    a.engine.sync("customers", SyncOptions(direction="push", batch_size=100))
    # Then three POSTs carried them
    assert calls.count("POST /api/customers") == 3

    # Given device B pulling in pages of 100, that stops after its first page
    b = Device.in_process(tmp_path / "b.db", reference_app)
    page = b.engine.remote.pull("customers", since="0", limit=100)
    b.store.conn.execute("INSERT INTO sync_cursors VALUES ('customers', ?, 'x')", (page.next_cursor,))
    # When it syncs again
    result = b.engine.sync("customers", SyncOptions(direction="pull", page_size=100))
    # Then it fetched only what came after the stored cursor
    assert result.pulled == 150
    a.close()
    b.close()


# -- §6.2 three-way merge; conflicts -------------------------------------------------------


def test_changes_to_different_fields_merge_without_conflict(devices: tuple[Device, Device], reference_app: Flask) -> None:
    # Given a customer on both devices
    a, b = devices
    record_id = _shared_customer(a, b)
    # When A changes the phone and B the city, then both sync
    a.sql("UPDATE customers SET phone = '555-0101' WHERE id = ?", record_id)
    b.sql("UPDATE customers SET city = 'Ghent' WHERE id = ?", record_id)
    a.sync("customers", policy="manual")
    result = b.sync("customers", policy="manual")
    a.sync("customers", policy="manual")
    # Then nobody saw a conflict and all three hold both changes
    assert result.conflicts == 0 and not open_conflicts(b.store)
    for holder in (a.live("customers"), b.live("customers"), server_live(reference_app, "customers")):
        assert (holder[record_id]["phone"], holder[record_id]["city"]) == ("555-0101", "Ghent")


def test_the_same_field_changed_differently_on_both_sides_is_a_conflict(devices: tuple[Device, Device]) -> None:
    # Given a customer on both devices, renamed differently on each
    a, b = devices
    record_id = _shared_customer(a, b)
    a.sql("UPDATE customers SET name = 'Ann A', phone = '1' WHERE id = ?", record_id)
    b.sql("UPDATE customers SET name = 'Ann B', city = 'Oslo' WHERE id = ?", record_id)
    a.sync("customers")
    # When B syncs under the manual policy
    result = b.sync("customers", policy="manual")
    # Then exactly the name is in conflict, with both values kept
    (conflict,) = open_conflicts(b.store)
    assert result.status == "conflicts" and conflict.fields == ["name"]
    assert (conflict.local["name"], conflict.remote["name"]) == ("Ann B", "Ann A")
    assert _one(b)["name"] == "Ann B"


@pytest.mark.parametrize("deleter", ["local", "remote"])
def test_edit_versus_delete_is_a_conflict(devices: tuple[Device, Device], deleter: str) -> None:
    # Given a customer on both devices; one side deletes it while the other edits it
    a, b = devices
    record_id = _shared_customer(a, b)
    editor, remover = (a, b) if deleter == "local" else (b, a)
    editor.sql("UPDATE customers SET notes = 'call back' WHERE id = ?", record_id)
    remover.sql("DELETE FROM customers WHERE id = ?", record_id)
    first, second = (a, b)
    first.sync("customers")
    # When the other device syncs under the manual policy
    second.sync("customers", policy="manual")
    # Then it is a conflict that names deleted_at and the edited field
    (conflict,) = open_conflicts(second.store)
    assert set(conflict.fields) == {"deleted_at", "notes"}


# -- §6.3 policies ------------------------------------------------------------------------


def _renamed_on_both(a: Device, b: Device) -> str:
    record_id = _shared_customer(a, b)
    a.sql("UPDATE customers SET name = 'From A' WHERE id = ?", record_id)
    b.sql("UPDATE customers SET name = 'From B', phone = '42' WHERE id = ?", record_id)
    a.sync("customers")
    return record_id


def test_policy_remote_takes_the_servers_value_and_keeps_other_local_edits(devices: tuple[Device, Device], reference_app: Flask) -> None:
    a, b = devices
    record_id = _renamed_on_both(a, b)
    # When B syncs with the default policy
    result = b.sync("customers")
    # Then the server's name wins everywhere, B's untouched phone edit survives, no conflict stays open
    assert result.status == "completed" and result.conflicts == 1
    assert (_one(b)["name"], _one(b)["phone"]) == ("From A", "42")
    assert server_live(reference_app, "customers")[record_id]["name"] == "From A"
    assert server_live(reference_app, "customers")[record_id]["phone"] == "42"


def test_policy_local_pushes_the_local_value(devices: tuple[Device, Device], reference_app: Flask) -> None:
    a, b = devices
    record_id = _renamed_on_both(a, b)
    # When B syncs with the local policy
    b.sync("customers", policy="local")
    # Then B's name reaches the server
    assert server_live(reference_app, "customers")[record_id]["name"] == "From B"
    assert _one(b)["name"] == "From B"


def test_policy_manual_keeps_both_until_the_user_decides_and_the_rest_goes_on(devices: tuple[Device, Device], reference_app: Flask) -> None:
    a, b = devices
    record_id = _renamed_on_both(a, b)
    b.sql("INSERT INTO customers (name) VALUES ('Unrelated new customer')")
    # When B syncs under manual
    result = b.sync("customers", policy="manual")
    # Then the conflicted record waits, unchanged on both sides, and the rest was synced
    assert result.status == "conflicts"
    assert server_live(reference_app, "customers")[record_id]["name"] == "From A"
    assert b.live("customers")[record_id]["name"] == "From B"
    assert "Unrelated new customer" in {r["name"] for r in server_live(reference_app, "customers").values()}
    # When the user picks a field-by-field merge: B's name, the server's (empty) phone
    (conflict,) = open_conflicts(b.store)
    resolve(b.store, conflict.id, "merged", {"name": "From B", "phone": None})
    b.sync("customers", policy="manual")
    # Then the chosen values are on the server and the conflict is closed
    stored = server_live(reference_app, "customers")[record_id]
    assert (stored["name"], stored["phone"]) == ("From B", None)
    assert not open_conflicts(b.store)


# -- §6.4 crash and network safety ----------------------------------------------------------


def test_a_push_whose_answer_was_lost_is_resent_without_duplicates(tmp_path: Path, reference_app: Flask) -> None:
    # Given a server whose answers to the first two POSTs are lost after it has applied them
    lost = {"left": 2}

    def lossy(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] == "POST" and lost["left"] > 0:
            lost["left"] -= 1
            b"".join(reference_app(environ, lambda *args: None))  # the server does its work...
            start_response("502 Bad Gateway", [("Content-Type", "text/plain")])
            return [b"lost"]  # ...and its answer never arrives
        return reference_app(environ, start_response)

    a = Device.in_process(tmp_path / "a.db", reference_app)
    settings = RemoteSettings(base_url="http://central.test/api", api_key=API_KEY, max_attempts=1,
                              allow_plain_http=True)  # served in-process: nothing leaves
    a.engine.remote = RemoteClient(settings, transport=httpx.WSGITransport(app=lossy))
    for n in range(30):
        a.sql("INSERT INTO customers (name) VALUES (?)", f"c{n}")
    # When the first sync fails and a later one succeeds
    first = a.engine.sync("customers", SyncOptions(direction="push"))
    a.engine.sync("customers", SyncOptions(direction="push"))
    last = a.engine.sync("customers", SyncOptions(direction="push"))
    # Then the server holds each customer once, and nothing is pending or conflicted
    assert first.status == "failed"
    assert last.status == "completed"
    assert len(server_live(reference_app, "customers")) == 30
    assert a.store.counts("customers") == {"pending": 0, "conflict": 0, "rejected": 0, "synced": 30}
    a.close()


def test_a_pull_interrupted_mid_way_resumes_without_loss_or_duplicates(tmp_path: Path, reference_app: Flask) -> None:
    # Given 1,200 customers on the server and a device whose store fails while applying page 3
    a = Device.in_process(tmp_path / "a.db", reference_app)
    for n in range(1200):
        a.sql("INSERT INTO customers (name) VALUES (?)", f"c{n}")
    a.sync("customers")
    b = Device.in_process(tmp_path / "b.db", reference_app)
    b.sql("CREATE TRIGGER boom BEFORE INSERT ON customers WHEN NEW.name = 'c1000' "
          "BEGIN SELECT RAISE(ABORT, 'disk gone'); END")
    failed = b.engine.sync("customers", SyncOptions(direction="pull", page_size=400))
    pulled_before = len(b.sql("SELECT id FROM customers"))
    # When the fault is gone and it syncs again
    b.sql("DROP TRIGGER boom")
    (stored_cursor,) = b.sql("SELECT cursor FROM sync_cursors WHERE entity = 'customers'")[0]
    asked: list[str] = []

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] == "GET" and environ["PATH_INFO"] == "/api/customers":
            asked.append(dict(parse_qsl(environ["QUERY_STRING"]))["since"])
        return reference_app(environ, start_response)

    b.engine.remote = remote_for(counting)  # type: ignore[arg-type]
    resumed = b.engine.sync("customers", SyncOptions(direction="pull", page_size=400))
    # Then the failed page left nothing half-applied and the resumed pull completed the set,
    # fetching from the stored cursor on: the failed page only
    assert failed.status == "failed" and pulled_before == 800
    assert (resumed.status, resumed.pulled) == ("completed", 400)
    assert asked[0] == stored_cursor != "0" and "0" not in asked, asked
    assert sorted(b.live("customers")) == sorted(a.live("customers"))
    a.close()
    b.close()


# -- §6.6, §6.7, §6.8 ------------------------------------------------------------------------


def test_sync_all_sends_parents_before_children(devices: tuple[Device, Device], reference_app: Flask) -> None:
    # Given a customer, a quote for them and an order for the quote, all made offline
    a, _ = devices
    a.sql("INSERT INTO customers (id, name) VALUES ('0' || substr(lower(hex(randomblob(16))), 2), 'Parent')")
    customer_id = a.sql("SELECT id FROM customers")[0]["id"]
    a.sql("INSERT INTO quotes (customer_id, total_amount) VALUES (?, '100.00')", customer_id)
    quote_id = a.sql("SELECT id FROM quotes")[0]["id"]
    a.sql("INSERT INTO orders (quote_id, customer_id, total_amount) VALUES (?, ?, '100.00')", quote_id, customer_id)
    # When everything syncs
    results = a.sync_all()
    # Then nothing is rejected and the server resolves every reference
    assert [r.rejected for r in results] == [0, 0, 0]
    (order,) = server_live(reference_app, "orders").values()
    assert (order["quote_id"], order["customer_id"]) == (quote_id, customer_id)


def test_after_a_both_sync_without_conflicts_local_and_remote_are_identical(devices: tuple[Device, Device], reference_app: Flask) -> None:
    # Given different offline work on two devices
    a, b = devices
    for n in range(40):
        a.sql("INSERT INTO customers (name, city) VALUES (?, 'A-town')", f"a{n}")
        b.sql("INSERT INTO customers (name, city) VALUES (?, 'B-town')", f"b{n}")
    a.sync_all()
    # When B syncs both ways
    b.sync_all()
    # Then B and the server hold the same live records, field for field
    for entity in ("customers", "quotes", "orders"):
        assert b.live(entity) == server_live(reference_app, entity)
    assert len(b.live("customers")) == 80


def test_a_rejected_record_is_quarantined_and_retried_after_it_is_edited(devices: tuple[Device, Device], reference_app: Flask) -> None:
    # Given one invalid customer among valid ones
    a, _ = devices
    a.sql("INSERT INTO customers (name, email) VALUES ('Good', 'good@example.com')")
    a.sql("INSERT INTO customers (name, email) VALUES ('Bad', 'not-an-email')")
    # When it syncs
    result = a.sync("customers")
    # Then the good one is on the server and the bad one waits locally with its reason
    assert result.rejected == 1 and result.pushed == 1
    (reason,) = [r["reason"] for r in a.sql("SELECT reason FROM sync_metadata WHERE sync_status = 'rejected'")]
    assert "email" in reason
    assert a.sync("customers").rejected == 0  # not retried while unchanged
    # When the user fixes it
    a.sql("UPDATE customers SET email = 'bad@example.com' WHERE name = 'Bad'")
    a.sync("customers")
    # Then it goes through
    assert sorted(r["name"] for r in server_live(reference_app, "customers").values()) == ["Bad", "Good"]


def test_quotes_made_offline_take_numbers_from_the_devices_block(devices: tuple[Device, Device], reference_app: Flask) -> None:
    # Given two devices that have synced once (and so hold number blocks)
    a, b = devices
    a.sync_all()
    b.sync_all()
    # When each makes quotes offline without choosing numbers
    for device in (a, b):
        for _ in range(5):
            device.sql("INSERT INTO quotes (project_name) VALUES ('Shelf')")
    local_numbers = [r["quote_number"] for d in (a, b) for r in d.sql("SELECT quote_number FROM quotes")]
    a.sync_all()
    b.sync_all()
    # Then every quote had a number before syncing, and all ten are distinct on the server
    assert all(local_numbers) and len(set(local_numbers)) == 10
    assert sorted(r["quote_number"] for r in server_live(reference_app, "quotes").values()) == sorted(local_numbers)


# -- over real HTTP ----------------------------------------------------------------------------


@pytest.fixture
def http_url(reference_app: Flask) -> Iterator[str]:
    server = waitress.create_server(reference_app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}/api"
    server.close()


def test_two_devices_converge_over_real_http(tmp_path: Path, reference_app: Flask, http_url: str) -> None:
    # Given two devices talking HTTP to a real server, each with offline work
    def device(name: str) -> Device:
        d = Device.in_process(tmp_path / f"{name}.db", reference_app)
        d.engine.remote = RemoteClient(RemoteSettings(base_url=http_url, api_key=API_KEY))
        return d

    a, b = device("a"), device("b")
    a.sql("INSERT INTO customers (name) VALUES ('From A')")
    b.sql("INSERT INTO customers (name) VALUES ('From B')")
    # When both sync both ways, twice round
    for d in (a, b, a):
        d.sync_all()
    # Then all three hold the same two customers, and the server's clock was read
    assert a.live("customers") == b.live("customers") == server_live(reference_app, "customers")
    assert len(a.live("customers")) == 2
    assert a.engine.remote.clock_skew_s is not None and abs(a.engine.remote.clock_skew_s) < 5
    a.close()
    b.close()


def test_store_can_be_opened_by_several_connections_at_once(tmp_path: Path) -> None:
    # Given the host app holding a write transaction
    store = LocalStore(tmp_path / "shared.db")
    host = sqlite3.connect(tmp_path / "shared.db", isolation_level=None, timeout=5, check_same_thread=False)
    host.execute("BEGIN IMMEDIATE")
    host.execute("INSERT INTO customers (name) VALUES ('x')")
    # When the engine wants to write, and the host commits a moment later
    threading.Timer(0.3, lambda: host.execute("COMMIT")).start()
    with store.engine_writes() as conn:
        conn.execute("INSERT INTO customers (name) VALUES ('y')")
    # Then the engine waited for its turn instead of failing (WAL + busy timeout)
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert len(store.conn.execute("SELECT * FROM customers").fetchall()) == 2
    store.close()


# -- §7 progress ------------------------------------------------------------------------------


def test_pull_progress_counts_every_record_up_to_the_total(tmp_path: Path, reference_app: Flask) -> None:
    # Given 1,200 customers on the server and a new device pulling in pages of 500
    a = Device.in_process(tmp_path / "a.db", reference_app)
    a.sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1200) "
          "INSERT INTO customers (name) SELECT 'c' || i FROM n")
    a.sync("customers")
    b = Device.in_process(tmp_path / "b.db", reference_app)
    # When it pulls
    b.engine.sync("customers", SyncOptions(direction="pull", page_size=500))
    # Then the progress events count up page by page to the total announced by the first page
    progress = [(e["done"], e["total"]) for e in b.events if e["type"] == "progress"]
    assert progress == [(500, 1200), (1000, 1200), (1200, 1200)]
    (done,) = [e for e in b.events if e["type"] == "completed"]
    assert (done["done"], done["total"], done["pulled"]) == (1200, 1200, 1200)
    a.close()
    b.close()
