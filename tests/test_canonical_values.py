"""After a sync the device holds exactly what the server holds (spec §6.11), field by field.

The host app writes its rows with plain SQL on its own sqlite3 connection, spelling values
as people and programs do: ``1500``, ``12.5``, ``2026-12-01T10:00``, times with offsets or
in SQLite's ``datetime('now')`` form, empty strings. The real engine syncs against the real
reference server on SQLite, PostgreSQL and MariaDB. Every check then reads the raw local
row with plain sqlite3 and the raw central row with plain SQL on a connection of its own,
and compares the stored values and their types; nothing passes through the product's own
normalising.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, text

from tests.support.device import Device
from tests.support.sync import central_rows, remote_for
from craftsync.worker.conflicts import open_conflicts, resolve


@pytest.fixture
def device(tmp_path: Path, backend_app: Flask) -> Iterator[Device]:
    one = Device.in_process(tmp_path / "device.db", backend_app)
    yield one
    one.close()


def typed(record: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """Each value with its type: 1500 == 1500.0 in Python, but they are not the same value."""
    return {name: (type(value).__name__, value) for name, value in record.items()}


def held_alike(device: Device, database_url: str, entity: str, record_id: str) -> dict[str, Any]:
    """Assert the device and the central database store the same values for one record, and
    that the device has nothing left to push; return the local row."""
    local = device.rows(entity)[record_id]
    remote = central_rows(database_url, entity, live_only=False)[record_id]
    differing = {name: (local[name], remote[name]) for name in local if typed(local)[name] != typed(remote)[name]}
    assert not differing, f"{entity} {record_id}: (device, server) differ in {differing}"
    assert device.pending() == 0, device.sql("SELECT * FROM sync_metadata WHERE sync_status != 'synced'")
    return local


def test_a_total_written_as_1500_is_held_as_1500_00_on_both_sides_after_a_sync(device: Device, database_url: str) -> None:
    # Given orders the host app saved with plain SQL: a delivery date with a time, whole totals
    (order,) = device.sql(
        "INSERT INTO orders (order_number, order_date, delivery_date, total_amount) "
        "VALUES ('O-7', '2026-11-30', '2026-12-01T10:00', 1500) RETURNING id"
    )
    (text_order,) = device.sql("INSERT INTO orders (order_number, total_amount) VALUES ('O-8', '1500') RETURNING id")
    # When the device syncs
    assert [run.status for run in device.sync_all()] == ["completed"] * 3
    # Then the server stores 2026-12-01 and 1500.00, the device holds exactly that, and nothing is pending
    local = held_alike(device, database_url, "orders", order["id"])
    assert (local["order_date"], local["delivery_date"], local["total_amount"]) == ("2026-11-30", "2026-12-01", "1500.00")
    assert held_alike(device, database_url, "orders", text_order["id"])["total_amount"] == "1500.00"


def test_a_discount_written_as_12_5_is_held_as_12_500_on_both_sides_after_a_sync(device: Device, database_url: str) -> None:
    # Given a quote whose percentages and amount the host app wrote as numbers and loose text
    (quote,) = device.sql(
        "INSERT INTO quotes (quote_number, discount_percent, tax_percent, total_amount, valid_until) "
        "VALUES ('Q-7', ?, ' 7 ', '98765432.1', '2026-12-01 10:00:00') RETURNING id",
        12.5,
    )
    # When the device syncs
    device.sync_all()
    # Then both sides hold the column's scale and the date part
    local = held_alike(device, database_url, "quotes", quote["id"])
    assert (local["discount_percent"], local["tax_percent"], local["total_amount"], local["valid_until"]) == (
        "12.500", "7.000", "98765432.10", "2026-12-01")


def test_times_with_offsets_or_without_milliseconds_are_held_in_utc_with_milliseconds(
    device: Device, database_url: str
) -> None:
    # Given a customer created at 10:00 in UTC+2 and updated with SQLite's datetime('now')
    (customer,) = device.sql(
        "INSERT INTO customers (name, created_at, updated_at) "
        "VALUES ('Ann', '2026-12-01T10:00:00+02:00', datetime('now')) RETURNING id, updated_at"
    )
    # ... and one soft-deleted at a time with microseconds in UTC-5:30
    (gone,) = device.sql(
        "INSERT INTO customers (name, deleted_at) VALUES ('Bob', '2026-12-01T10:00:00.123456-05:30') RETURNING id"
    )
    # When the device syncs
    device.sync("customers")
    # Then both sides hold each time in UTC, to the millisecond, with a Z
    local = held_alike(device, database_url, "customers", customer["id"])
    assert local["created_at"] == "2026-12-01T08:00:00.000Z"
    assert local["updated_at"] == customer["updated_at"].replace(" ", "T") + ".000Z"
    assert held_alike(device, database_url, "customers", gone["id"])["deleted_at"] == "2026-12-01T15:30:00.123Z"


def test_empty_text_is_held_as_empty_and_an_empty_date_amount_or_reference_as_null_on_both_sides(
    device: Device, database_url: str
) -> None:
    # Given a customer with empty and blank text, and an order with an empty date, total and quote
    (customer,) = device.sql(
        "INSERT INTO customers (name, email, notes, company, phone) VALUES ('Ann', '', '', '  ', NULL) RETURNING id"
    )
    (order,) = device.sql(
        "INSERT INTO orders (order_number, delivery_date, total_amount, quote_id, customer_id) "
        "VALUES ('O-9', '', '', '', ?) RETURNING id",
        customer["id"],
    )
    # When the device syncs
    assert [run.status for run in device.sync_all()] == ["completed"] * 3
    # Then text keeps its empty string, null stays null, and an empty typed field is null on both sides
    local = held_alike(device, database_url, "customers", customer["id"])
    assert (local["email"], local["notes"], local["company"], local["phone"]) == ("", "", "  ", None)
    stored = held_alike(device, database_url, "orders", order["id"])
    assert (stored["delivery_date"], stored["total_amount"], stored["quote_id"]) == (None, None, None)
    assert stored["customer_id"] == customer["id"]


def test_unicode_text_is_held_unchanged_on_both_sides(device: Device, database_url: str) -> None:
    # Given a customer written in several scripts, with an emoji and a decomposed accent
    values = {
        "name": "Zoë Ångström",
        "company": "李雷 & 韩梅梅",
        "city": "Zürich",
        "state": "תל אביב",
        "address": "Cafe\u0301 Straße 1",  # e + combining acute: must not be recomposed
        "notes": "Café ☕ 🙂 — naïve, ends with a space ",
    }
    (customer,) = device.sql(
        f"INSERT INTO customers ({', '.join(values)}) VALUES ({', '.join('?' * len(values))}) RETURNING id",
        *values.values(),
    )
    # When the device syncs
    device.sync("customers")
    # Then every code point is stored as written, on both sides
    local = held_alike(device, database_url, "customers", customer["id"])
    assert {name: local[name] for name in values} == values


def test_a_record_pulled_by_another_device_is_held_exactly_as_the_server_holds_it(
    tmp_path: Path, backend_app: Flask, device: Device, database_url: str
) -> None:
    # Given a quote written loosely on one device and synced
    (quote,) = device.sql(
        "INSERT INTO quotes (quote_number, total_amount, discount_percent, valid_until, created_at) "
        "VALUES ('Q-1', 7, '0.5', '2027-01-31T23:59:59-08:00', '2026-12-01 09:30:00') RETURNING id"
    )
    device.sync_all()
    # When a second device pulls it
    other = Device.in_process(tmp_path / "other.db", backend_app)
    other.sync_all()
    # Then the second device holds the server's values, as does the first
    pulled = held_alike(other, database_url, "quotes", quote["id"])
    assert typed(pulled) == typed(held_alike(device, database_url, "quotes", quote["id"]))
    assert (pulled["total_amount"], pulled["discount_percent"], pulled["valid_until"], pulled["created_at"]) == (
        "7.00", "0.500", "2027-01-31", "2026-12-01T09:30:00.000Z")
    other.close()


def test_a_host_edit_made_while_its_push_was_on_the_wire_is_kept_and_pushed_next(
    device: Device, backend_app: Flask, database_url: str
) -> None:
    # Given an order written as 1500, and a host app that edits it again while its push is on the wire
    (order,) = device.sql("INSERT INTO orders (order_number, total_amount) VALUES ('O-1', 1500) RETURNING id")

    def edit_during_push(environ: dict[str, Any], start_response: Any) -> Any:
        answer = backend_app(environ, start_response)
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == "/api/orders":
            host = sqlite3.connect(device.path, isolation_level=None, timeout=30)  # (this runs on the push thread)
            host.execute("UPDATE orders SET total_amount = '2000', notes = 'rush' WHERE id = ?", (order["id"],))
            host.close()
        return answer

    device.engine.remote = remote_for(edit_during_push)  # type: ignore[arg-type]
    # When the push's answer (1500.00) arrives after the edit
    assert device.sync("orders", "push").status == "completed"
    # Then the host's edit is not overwritten by the server's form of the old value: it waits to be pushed
    (row,) = device.sql("SELECT total_amount, notes FROM orders")
    assert (row["total_amount"], row["notes"]) == ("2000", "rush")
    assert device.pending() == 1
    # When the next sync runs
    device.engine.remote = remote_for(backend_app)
    device.sync("orders")
    # Then both sides hold the edit, in the server's form
    local = held_alike(device, database_url, "orders", order["id"])
    assert (local["total_amount"], local["notes"]) == ("2000.00", "rush")


def test_a_respelled_value_the_server_already_holds_is_taken_back_in_its_form_without_a_new_version(
    device: Device, database_url: str
) -> None:
    # Given a synced quote of 12.50
    (quote,) = device.sql("INSERT INTO quotes (quote_number, total_amount) VALUES ('Q-2', '12.50') RETURNING id")
    device.sync_all()
    # When the host app writes the same amount as 12.5 and the device pushes
    device.sql("UPDATE quotes SET total_amount = ? WHERE id = ?", 12.5, quote["id"])
    assert device.pending() == 1
    device.sync("quotes", "push")
    # Then the server answered unchanged (no new version) and the device holds 12.50 again
    assert held_alike(device, database_url, "quotes", quote["id"])["total_amount"] == "12.50"
    assert _version(database_url, "quotes", quote["id"]) == 1


def test_a_local_edit_merged_with_a_remote_one_is_held_in_the_servers_form(
    tmp_path: Path, backend_app: Flask, device: Device, database_url: str
) -> None:
    # Given an order on two devices
    (order,) = device.sql("INSERT INTO orders (order_number, total_amount) VALUES ('O-3', '10') RETURNING id")
    device.sync_all()
    other = Device.in_process(tmp_path / "other.db", backend_app)
    other.sync_all()
    # When one device ships it, and the other, offline, changes its total and delivery time loosely
    device.sql("UPDATE orders SET status = 'shipped' WHERE id = ?", order["id"])
    device.sync("orders")
    other.sql("UPDATE orders SET total_amount = 99, delivery_date = '2026-12-24T18:00:00+01:00' WHERE id = ?",
              order["id"])
    # ... and then syncs, merging both edits
    other.sync("orders")
    device.sync("orders")
    # Then all three hold both edits, in the server's form
    merged = held_alike(other, database_url, "orders", order["id"])
    assert (merged["status"], merged["total_amount"], merged["delivery_date"]) == ("shipped", "99.00", "2026-12-24")
    assert typed(held_alike(device, database_url, "orders", order["id"])) == typed(merged)
    other.close()


def test_a_conflict_settled_with_the_local_record_is_held_in_the_servers_form(
    tmp_path: Path, backend_app: Flask, device: Device, database_url: str
) -> None:
    # Given a quote changed on two devices to different totals, in conflict on one of them
    (quote,) = device.sql("INSERT INTO quotes (quote_number, total_amount) VALUES ('Q-4', '1.00') RETURNING id")
    device.sync_all()
    other = Device.in_process(tmp_path / "other.db", backend_app)
    other.sync_all()
    other.sql("UPDATE quotes SET total_amount = '2' WHERE id = ?", quote["id"])
    other.sync("quotes")
    device.sql("UPDATE quotes SET total_amount = 1500, valid_until = '2026-12-01T10:00' WHERE id = ?", quote["id"])
    assert device.sync("quotes", policy="manual").status == "conflicts"
    # When the user keeps the local record and the device syncs
    (conflict,) = open_conflicts(device.store)
    resolve(device.store, conflict.id, "local")
    device.sync("quotes", policy="manual")
    # Then both sides hold the local choice, in the server's form
    local = held_alike(device, database_url, "quotes", quote["id"])
    assert (local["total_amount"], local["valid_until"]) == ("1500.00", "2026-12-01")
    other.close()


def _version(database_url: str, entity: str, record_id: str) -> int:
    """The version the central database stores for one record (plain SQL)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT version FROM craftsync_{entity} WHERE id = :id"), {"id": record_id}).scalar_one())
    finally:
        engine.dispose()
