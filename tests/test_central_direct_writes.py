"""Changes other programs make in the central database reach the devices and are never
overwritten silently (spec §6.10), on SQLite, PostgreSQL and MariaDB.

Another program (``tests.support.direct.Direct``) writes the central tables with plain SQL
on a connection of its own: an INSERT of only ``id`` and ``name``, an UPDATE of one field, a
soft delete and a hard DELETE. Each reaches two devices; its edit merges with a device's
edit of another field, and is a conflict with a device's edit of the same field (under each
policy) and its delete with a device's edit; a transaction of it held open, or racing a
device's push of the same record, is never lost, and never deadlocks with a pull.

Devices sync with the reference server in-process (``Device.in_process``); every check
reads stored values raw: the devices' rows through their host-app connection, the central
rows and bookkeeping with plain SQL.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from craftsync.contract.records import data_fields
from craftsync.worker.conflicts import open_conflicts, resolve
from tests.support.device import Device
from tests.support.direct import Direct, canonical_now, new_hex_id
from tests.support.sync import central_rows, database_url_of


@pytest.fixture
def direct(backend_app: Flask) -> Iterator[Direct]:
    """Another program on the central database behind ``backend_app``."""
    program = Direct(database_url_of(backend_app))
    yield program
    program.close()


@pytest.fixture
def two(tmp_path: Path, backend_app: Flask) -> Iterator[tuple[Device, Device]]:
    """Two desktops syncing in-process with ``backend_app``."""
    a, b = Device.in_process(tmp_path / "a.db", backend_app), Device.in_process(tmp_path / "b.db", backend_app)
    yield a, b
    a.close()
    b.close()


def _central(app: Flask, record_id: str) -> dict[str, Any] | None:
    """The central row of one customer as stored (plain SQL), or None when it has none."""
    return central_rows(database_url_of(app), "customers", live_only=False).get(record_id)


def _row(device: Device, record_id: str) -> dict[str, Any] | None:
    """The device's row of one customer as stored, soft-deleted or not, or None."""
    return device.rows("customers").get(record_id)


def _synced(device: Device, record_id: str) -> tuple[str, int | None]:
    (meta,) = device.sql(
        "SELECT sync_status, remote_version FROM sync_metadata WHERE entity = 'customers' AND record_id = ?", record_id)
    return meta["sync_status"], meta["remote_version"]


def _shared(direct: Direct, devices: tuple[Device, ...], **values: Any) -> str:
    """A customer another program inserted, pulled by every device; returns its id."""
    record_id = direct.insert("customers", name="Ann", **values)
    for device in devices:
        assert device.sync("customers", "pull").status == "completed"
    return record_id


# -- each kind of write reaches every device ---------------------------------------------------


def test_a_direct_insert_reaches_both_devices(backend_app: Flask, direct: Direct, two: tuple[Device, Device]) -> None:
    # Given another program inserting a customer with only an id and a name: no version, no position
    record_id = direct.insert("customers", name="Straight from accounting")
    # When both devices sync
    for device in two:
        assert device.sync("customers").status == "completed"
    # Then each holds the row as the central database stores it, agreed at version 1
    stored = _central(backend_app, record_id)
    assert stored is not None and stored["name"] == "Straight from accounting"
    assert stored == {**dict.fromkeys(data_fields("customers")), "id": record_id, "name": "Straight from accounting"}
    for device in two:
        assert _row(device, record_id) == stored
        assert _synced(device, record_id) == ("synced", 1)
    assert direct.book("customers")[record_id].version == 1


def test_a_direct_update_of_one_field_reaches_both_devices(
    backend_app: Flask, direct: Direct, two: tuple[Device, Device]
) -> None:
    # Given a customer on both devices
    record_id = _shared(direct, two, city="Leeds")
    # When another program changes its phone, and nothing else
    assert direct.update("customers", record_id, phone="555-0199") == 1
    for device in two:
        assert device.sync("customers").status == "completed"
    # Then both devices hold the new phone and every other field as it was, at version 2
    stored = _central(backend_app, record_id)
    assert stored is not None and (stored["phone"], stored["city"], stored["name"]) == ("555-0199", "Leeds", "Ann")
    for device in two:
        assert _row(device, record_id) == stored
        assert _synced(device, record_id) == ("synced", 2)


def test_a_direct_soft_delete_reaches_both_devices(
    backend_app: Flask, direct: Direct, two: tuple[Device, Device]
) -> None:
    # Given a customer on both devices
    record_id = _shared(direct, two, city="Leeds")
    # When another program soft-deletes it
    when = canonical_now()
    direct.soft_delete("customers", record_id, when)
    for device in two:
        assert device.sync("customers").status == "completed"
    # Then both devices keep the row, deleted at that time, and it is no longer live anywhere
    stored = _central(backend_app, record_id)
    assert stored is not None and stored["deleted_at"] == when
    for device in two:
        assert _row(device, record_id) == stored
        assert record_id not in device.live("customers")
        assert _synced(device, record_id) == ("synced", 2)


def test_a_direct_hard_delete_reaches_both_devices_as_a_tombstone(
    backend_app: Flask, direct: Direct, two: tuple[Device, Device]
) -> None:
    # Given two customers on both devices
    gone = _shared(direct, two, city="Leeds")
    kept = _shared(direct, two, city="York")
    # When another program DELETEs one row outright
    before = canonical_now()
    assert direct.delete("customers", gone) == 1
    for device in two:
        assert device.sync("customers").status == "completed"
    # Then the central database has no row for it, and its bookkeeping keeps a tombstone
    assert _central(backend_app, gone) is None
    tombstone = direct.book("customers")[gone]
    assert tombstone.version == 2 and tombstone.deleted_at is not None and tombstone.deleted_at >= before
    # ... and each device holds it as it holds a soft-deleted record: a row, deleted at the
    # tombstone's time, out of the live records, agreed at the tombstone's version. The
    # server has nothing else of it: the device holds the record as served (§6.11).
    served = {**dict.fromkeys(data_fields("customers")), "id": gone, "deleted_at": tombstone.deleted_at}
    for device in two:
        assert _row(device, gone) == served
        assert set(device.live("customers")) == {kept}
        assert _synced(device, gone) == ("synced", 2)
        assert device.pending() == 0


def test_a_direct_change_of_a_rows_key_reaches_both_devices_as_a_delete_and_a_new_record(
    backend_app: Flask, direct: Direct, two: tuple[Device, Device]
) -> None:
    # Given a customer on both devices
    old = _shared(direct, two, city="Leeds")
    # When another program gives its row another key
    new = new_hex_id()
    assert direct.execute("UPDATE customers SET id = :new WHERE id = :old", new=new, old=old) == 1
    for device in two:
        assert device.sync("customers").status == "completed"
    # Then the bookkeeping holds the old id as a tombstone and the new one as a record
    book = direct.book("customers")
    assert book[old].version == 2 and book[old].deleted_at is not None
    assert book[new].version == 1 and book[new].deleted_at is None
    # ... and each device holds the row under its new id only, as the central database stores it
    stored = _central(backend_app, new)
    assert stored is not None and stored["city"] == "Leeds"
    for device in two:
        assert set(device.live("customers")) == {new}
        assert _row(device, new) == stored
        assert _row(device, old)["deleted_at"] == book[old].deleted_at
        assert device.pending() == 0


# -- a device's edit meets another program's ---------------------------------------------------


def test_a_device_edit_and_a_direct_edit_of_other_fields_merge_without_conflict(
    backend_app: Flask, direct: Direct, two: tuple[Device, Device]
) -> None:
    # Given a customer on a device
    a, _ = two
    record_id = _shared(direct, (a,))
    # When the device changes the city while another program changes the phone, then the device syncs
    a.sql("UPDATE customers SET city = 'Ghent' WHERE id = ?", record_id)
    direct.update("customers", record_id, phone="555-0101")
    result = a.sync("customers", policy="manual")
    # Then nobody saw a conflict, and the device and the central row both hold both changes
    assert (result.status, result.conflicts) == ("completed", 0)
    assert a.sql("SELECT count(*) FROM sync_conflicts")[0][0] == 0
    stored = _central(backend_app, record_id)
    assert stored is not None and (stored["city"], stored["phone"]) == ("Ghent", "555-0101")
    assert _row(a, record_id) == stored
    assert _synced(a, record_id) == ("synced", 3)


@pytest.mark.parametrize("policy", ["remote", "local", "manual"])
def test_a_device_edit_and_a_direct_edit_of_the_same_field_are_a_conflict(
    backend_app: Flask, direct: Direct, two: tuple[Device, Device], policy: str
) -> None:
    # Given a customer on a device
    a, _ = two
    record_id = _shared(direct, (a,))
    # When the device and another program both rename it, differently, then the device syncs
    a.sql("UPDATE customers SET name = 'From the device' WHERE id = ?", record_id)
    direct.update("customers", record_id, name="From accounting")
    result = a.sync("customers", policy=policy)
    # Then it is a conflict, settled the policy's way, never an overwrite without one
    assert result.conflicts == 1
    stored = _central(backend_app, record_id)
    assert stored is not None
    if policy == "manual":
        # ... under manual: kept for the user, both sides untouched
        (conflict,) = open_conflicts(a.store)
        assert result.status == "conflicts" and conflict.fields == ["name"]
        assert (conflict.local["name"], conflict.remote["name"]) == ("From the device", "From accounting")
        assert stored["name"] == "From accounting"
        assert _row(a, record_id)["name"] == "From the device"  # type: ignore[index]
        assert _synced(a, record_id)[0] == "conflict"
        return
    # ... under remote the program's name wins on the device; under local the device's on the server
    want = "From accounting" if policy == "remote" else "From the device"
    assert result.status == "completed" and not open_conflicts(a.store)
    assert stored["name"] == want and _row(a, record_id) == stored
    assert _synced(a, record_id) == ("synced", 2 if policy == "remote" else 3)


@pytest.mark.parametrize("deletion", ["hard", "soft"])
def test_a_direct_delete_of_a_record_a_device_edited_is_a_conflict(
    backend_app: Flask, direct: Direct, two: tuple[Device, Device], deletion: str
) -> None:
    # Given a customer on a device, which the device edits
    a, _ = two
    record_id = _shared(direct, (a,))
    a.sql("UPDATE customers SET notes = 'call back' WHERE id = ?", record_id)
    # When another program deletes it (DELETE, or a soft delete: the same conflict), then the device syncs
    if deletion == "hard":
        direct.delete("customers", record_id)
    else:
        direct.soft_delete("customers", record_id)
    result = a.sync("customers", policy="manual")
    # Then it is a conflict naming deleted_at and the edited field; the device keeps its edit
    # and the central database stays as the program left it
    (conflict,) = open_conflicts(a.store)
    assert result.status == "conflicts" and set(conflict.fields) == {"deleted_at", "notes"}
    assert conflict.remote["deleted_at"] is not None
    assert _row(a, record_id)["notes"] == "call back"  # type: ignore[index]
    stored = _central(backend_app, record_id)
    assert stored is None if deletion == "hard" else stored is not None and stored["notes"] is None


# -- a direct transaction open while a push is on the wire --------------------------------------


def _later(delay: float, action: Callable[[], None]) -> threading.Thread:
    """Run ``action`` on another thread after ``delay`` s."""
    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run, name="direct-program")
    thread.start()
    return thread


def test_a_direct_transaction_open_during_a_push_of_the_same_record_makes_the_push_conflict(
    backend_app: Flask, direct: Direct, two: tuple[Device, Device]
) -> None:
    # Given a customer on a device, which the device renames
    a, _ = two
    record_id = _shared(direct, (a,))
    a.sql("UPDATE customers SET name = 'From the device' WHERE id = ?", record_id)
    # ... while another program has renamed it in a transaction it has not committed yet
    # (on SQLite it holds the file's write lock; elsewhere the row's lock)
    program = direct.begin()
    program.execute("UPDATE customers SET name = 'From accounting' WHERE id = :id", id=record_id)
    # When the device pushes, and the program commits a second later, while the push waits
    committer = _later(1.0, program.commit)
    started = time.monotonic()
    result = a.sync("customers", "push", policy="manual")
    committer.join()
    # Then the push waited for the program's write, read its change and answered a conflict:
    # the central database holds the program's name, the device's waits for the user
    assert time.monotonic() - started >= 0.9, "the push did not wait for the program's transaction"
    assert result.conflicts == 1
    assert _central(backend_app, record_id)["name"] == "From accounting"  # type: ignore[index]
    (conflict,) = open_conflicts(a.store)
    assert (conflict.local["name"], conflict.remote["name"]) == ("From the device", "From accounting")
    assert _row(a, record_id)["name"] == "From the device"  # type: ignore[index]
    assert direct.book("customers")[record_id].version == 2


#: Rounds of the race below, each with its own timing.
RACE_ROUNDS = 12


def test_a_direct_change_racing_a_push_of_the_same_record_is_never_lost(
    backend_app: Flask, direct: Direct, two: tuple[Device, Device]
) -> None:
    """Whatever the interleaving, a program's change of a record a device is pushing ends in
    one of two ways: the push read it and answered a conflict, or it committed after the push
    and overwrote it. Either way the central database holds the program's value once both
    are done, and the device learns it on its next pull: as the record it now holds, or as
    the server's side of the open conflict. The device's value never silently replaces it."""
    # Given a customer on a device
    a, _ = two
    record_id = _shared(direct, (a,))
    rng = random.Random(20261201)
    outcomes: list[str] = []
    writes = 1
    for k in range(RACE_ROUNDS):
        # When the device renames it and pushes, while another program renames it in a
        # transaction that begins and commits at random moments around the push
        mine, theirs = f"Device {k}", f"Accounting {k}"
        a.sql("UPDATE customers SET name = ? WHERE id = ?", mine, record_id)
        begin_after, hold_for, push_after = rng.uniform(0, 0.05), rng.uniform(0, 0.2), rng.uniform(0, 0.05)

        def program() -> None:
            time.sleep(begin_after)
            transaction = direct.begin()
            transaction.execute("UPDATE customers SET name = :name WHERE id = :id", name=theirs, id=record_id)
            time.sleep(hold_for)
            transaction.commit()

        racer = _later(0, program)
        time.sleep(push_after)
        pushed = a.sync("customers", "push", policy="manual")
        racer.join()
        pulled = a.sync("customers", "pull", policy="manual")
        assert "failed" not in (pushed.status, pulled.status), (pushed.error, pulled.error)
        writes += 1 + (pushed.pushed == 1)

        # Then the central database holds the program's name, with one version per write
        stored = _central(backend_app, record_id)
        assert stored is not None and stored["name"] == theirs, f"round {k}: the program's {theirs!r} was lost"
        assert direct.book("customers")[record_id].version == writes, f"round {k}"
        conflicts = open_conflicts(a.store)
        if pushed.conflicts:
            # ... and either the push conflicted: nothing of the device's was written, the
            # device keeps its name and shows the program's as the server's side
            assert pushed.pushed == 0 and [c.record_id for c in conflicts] == [record_id], f"round {k}"
            assert (conflicts[0].local["name"], conflicts[0].remote["name"]) == (mine, theirs), f"round {k}"
            assert _row(a, record_id)["name"] == mine  # type: ignore[index]
            outcomes.append("the push conflicted")
            resolve(a.store, conflicts[0].id, "remote")
        else:
            # ... or the push went first and the program's change came after it, and the pull
            # brought it to the device
            assert pushed.pushed == 1 and not conflicts, f"round {k}: {pushed}, {conflicts}"
            outcomes.append("the program wrote after the push")
        assert _row(a, record_id) == stored, f"round {k}: the device does not hold the program's change"
        assert _synced(a, record_id) == ("synced", writes), f"round {k}"
    print(f"outcomes of {RACE_ROUNDS} races: {sorted(set(outcomes))}")


def test_a_pull_and_another_programs_open_transaction_never_deadlock(
    backend_app: Flask, direct: Direct, two: tuple[Device, Device]
) -> None:
    # Given customers a device has, and many more another program inserted since (their
    # changes wait for a place in the feed)
    a, _ = two
    held, waiting = _shared(direct, (a,)), direct.insert("customers", name="Waiting")
    for n in range(60):
        direct.insert("customers", name=f"Batch {n}")
    # ... and a transaction of the program's, open, that has edited the device's customer
    program = direct.begin()
    program.execute("UPDATE customers SET city = 'Oslo' WHERE id = :id", id=held)
    # When the device pulls, and while the pull numbers the waiting changes the program
    # edits one of them too, in the same transaction, then commits
    results: list[Any] = []
    puller = _later(0, lambda: results.append(a.sync("customers", "pull")))
    time.sleep(0.5)
    program.execute("UPDATE customers SET city = 'Bergen' WHERE id = :id", id=waiting)
    program.commit()
    puller.join(60)
    # Then neither waited for the other for ever, nor was refused as a deadlock: the pull
    # completed and the program's transaction committed
    (pulled,) = results
    assert pulled.status == "completed", pulled.error
    # ... and the next pull brings the program's two edits
    assert a.sync("customers", "pull").status == "completed"
    live = a.live("customers")
    assert (live[held]["city"], live[waiting]["city"], len(live)) == ("Oslo", "Bergen", 62)
    assert _central(backend_app, held)["city"] == "Oslo"  # type: ignore[index]


def test_a_quote_made_offline_for_a_customer_another_program_deleted_is_quarantined_with_the_reason(
    backend_app: Flask, direct: Direct, two: tuple[Device, Device]
) -> None:
    # Given a customer on a device, which another program then DELETEs from the central database
    a, _ = two
    record_id = _shared(direct, (a,))
    direct.delete("customers", record_id)
    # ... while the device, not yet told, makes a quote for it
    (quote,) = a.sql("INSERT INTO quotes (customer_id, total_amount) VALUES (?, '12.50') RETURNING id", record_id)
    # When the device runs full syncs (customers first, then quotes)
    for _ in range(2):
        runs = a.sync_all()
        assert [run.status for run in runs] == ["completed"] * 3
    # Then the quote is not left pending for ever, waiting for a parent that will never come:
    # it is quarantined (§6.8) with a reason that says what happened, for the user to fix
    (meta,) = a.sql("SELECT sync_status, reason FROM sync_metadata WHERE entity = 'quotes' AND record_id = ?",
                    quote["id"])
    assert meta["sync_status"] == "rejected", dict(meta)
    assert "customer_id" in meta["reason"] and "deleted" in meta["reason"], meta["reason"]
    assert quote["id"] not in central_rows(database_url_of(backend_app), "quotes", live_only=False)
    # ... and once the user points it at a customer that exists, it is stored
    other = direct.insert("customers", name="Bob")
    assert a.sync("customers").status == "completed"
    a.sql("UPDATE quotes SET customer_id = ? WHERE id = ?", other, quote["id"])
    assert a.sync("quotes").status == "completed" and a.pending() == 0
    assert central_rows(database_url_of(backend_app), "quotes")[quote["id"]]["customer_id"] == other


def test_an_order_a_device_deleted_stays_removed_when_another_program_edits_then_deletes_its_row(
    backend_app: Flask, direct: Direct, two: tuple[Device, Device]
) -> None:
    # Given an order with a number, on a device and on the server
    a, _ = two
    customer = _shared(direct, (a,))
    (order,) = a.sql("INSERT INTO orders (customer_id, notes) VALUES (?, 'new') RETURNING id", customer)
    assert a.sync("orders").status == "completed"
    assert a.rows("orders")[order["id"]]["order_number"] is not None
    # ... which the host app then DELETEs, and the device pushes the delete (a soft delete on the server)
    a.sql("DELETE FROM orders WHERE id = ?", order["id"])
    assert a.sync("orders").status == "completed"
    # ... and another program edits the deleted central row, and the device pulls that edit
    direct.update("orders", order["id"], notes="closed by accounting")
    assert a.sync("orders").status == "completed"
    # When the program DELETEs the row outright, and the device syncs the tombstone (no fields)
    assert direct.delete("orders", order["id"]) == 1
    assert a.sync("orders").status == "completed"
    # Then the order the device removed stays removed: no row comes back (with a new number or
    # without), and the device agrees with the server at the tombstone's version, nothing pending
    back = [dict(row) for row in a.sql("SELECT * FROM orders WHERE id = ?", order["id"])]
    assert back == [], f"the removed order is back: {back}"
    (meta,) = a.sql("SELECT sync_status, remote_version FROM sync_metadata WHERE entity = 'orders' "
                    "AND record_id = ?", order["id"])
    assert (meta["sync_status"], meta["remote_version"]) == ("synced", direct.book("orders")[order["id"]].version)
    assert a.pending() == 0

