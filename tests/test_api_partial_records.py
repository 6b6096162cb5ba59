"""A push never nulls what it leaves out (spec §5, §6.12), on SQLite, PostgreSQL and MariaDB.

A pushed record may carry only some fields. For an update, a field left out keeps the value
the server stores and a field sent as null is cleared; an update that changes something
without saying ``updated_at`` gets the server's time there. For a new record a field left
out is null, but ``created_at`` and ``updated_at``, which take the server's time. Re-sending
the same fields is ``unchanged``; a stale ``base_version`` is still a conflict.

Every check reads the stored row with plain SQL on a connection of its own.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from tests.support.api import AUTH, new_id, push
from tests.support.sync import central_rows

CANONICAL_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

FULL_CUSTOMER = {
    "name": "Ann Smith",
    "company": "Smith & Daughters",
    "email": "ann@example.com",
    "phone": "555-0101",
    "address": "1 High Street",
    "city": "Leeds",
    "notes": "prefers mornings",
    "created_at": "2026-01-02T03:04:05.000Z",
    "updated_at": "2026-01-02T03:04:05.000Z",
}


@pytest.fixture
def client(backend_app: Flask) -> FlaskClient:
    return backend_app.test_client()


def post(client: FlaskClient, entity: str, record: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A single-record POST: its status code and its result."""
    response = client.post(f"/api/{entity}", json=record, headers=AUTH)
    return response.status_code, response.get_json()


def stored(database_url: str, entity: str, record_id: str) -> dict[str, Any]:
    """The record's row as the central database stores it (plain SQL, its own connection)."""
    return central_rows(database_url, entity, live_only=False)[record_id]


def version_of(database_url: str, entity: str, record_id: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT version FROM craftsync_{entity} WHERE id = :id"), {"id": record_id}).scalar_one())
    finally:
        engine.dispose()


def existing_customer(client: FlaskClient) -> dict[str, Any]:
    record = {"id": new_id(), **FULL_CUSTOMER}
    (result,) = push(client, "customers", [record])
    assert result["status"] == "created", result
    return record


def test_a_post_of_some_fields_keeps_every_field_it_leaves_out(client: FlaskClient, database_url: str) -> None:
    # Given a customer with every field filled in
    record = existing_customer(client)
    # When a client POSTs only the name, phone and company, from the current version
    status, result = post(client, "customers", {"id": record["id"], "base_version": 1, "name": "Ann Jones",
                                                "phone": "555-0202", "company": "Jones Ltd"})
    # Then it is updated, and e-mail, address, city, notes and created_at are as they were
    assert (status, result["status"], result["version"]) == (200, "updated", 2)
    row = stored(database_url, "customers", record["id"])
    assert (row["name"], row["phone"], row["company"]) == ("Ann Jones", "555-0202", "Jones Ltd")
    for name in ("email", "address", "city", "notes", "created_at"):
        assert row[name] == record[name], name
    # ... updated_at is the server's time of the change, and the answer carries the whole record
    assert CANONICAL_TIME.match(row["updated_at"]) and row["updated_at"] > record["updated_at"]
    assert {k: v for k, v in result["record"].items() if k != "version"} == row


def test_an_explicit_null_clears_a_field_and_only_that_field(client: FlaskClient, database_url: str) -> None:
    # Given a customer with every field filled in
    record = existing_customer(client)
    # When a client sends the e-mail as null, and its own updated_at
    status, result = post(client, "customers", {"id": record["id"], "base_version": 1, "email": None,
                                                "updated_at": "2026-02-03T04:05:06+01:00"})
    # Then the e-mail is cleared, updated_at is the one sent (in UTC), and everything else is kept
    assert (status, result["status"]) == (200, "updated")
    row = stored(database_url, "customers", record["id"])
    assert row["email"] is None
    assert row["updated_at"] == "2026-02-03T03:05:06.000Z"
    assert {k: v for k, v in row.items() if k not in ("email", "updated_at")} == {
        k: v for k, v in {**record, "state": None, "zip": None, "country": None, "deleted_at": None}.items()
        if k not in ("email", "updated_at")
    }


def test_a_resent_partial_update_is_unchanged_and_writes_nothing(client: FlaskClient, database_url: str) -> None:
    # Given a customer updated by a POST of some of its fields
    record = existing_customer(client)
    partial = {"id": record["id"], "base_version": 1, "phone": "555-0303", "city": None}
    assert post(client, "customers", partial)[1]["status"] == "updated"
    before = stored(database_url, "customers", record["id"])
    # When the same POST is sent again (a retry after a lost answer)
    status, result = post(client, "customers", partial)
    # Then it is unchanged at the first answer's version, and the row (updated_at too) is as it was
    assert (status, result["status"], result["version"]) == (200, "unchanged", 2)
    assert stored(database_url, "customers", record["id"]) == before
    assert version_of(database_url, "customers", record["id"]) == 2


def test_a_partial_update_from_a_stale_base_version_is_a_conflict_that_writes_nothing(
    client: FlaskClient, database_url: str
) -> None:
    # Given a customer another client has since updated to version 2
    record = existing_customer(client)
    post(client, "customers", {"id": record["id"], "base_version": 1, "name": "Other device"})
    before = stored(database_url, "customers", record["id"])
    # When this client POSTs a different phone from version 1
    status, result = post(client, "customers", {"id": record["id"], "base_version": 1, "phone": "555-0909"})
    # Then it is a 409 conflict with the server's whole record, and nothing is written
    assert (status, result["status"], result["version"]) == (409, "conflict", 2)
    assert result["record"]["name"] == "Other device" and result["record"]["email"] == record["email"]
    assert stored(database_url, "customers", record["id"]) == before


def test_fields_that_equal_the_servers_are_unchanged_whatever_the_base_version(
    client: FlaskClient, database_url: str
) -> None:
    # Given a customer at version 2
    record = existing_customer(client)
    post(client, "customers", {"id": record["id"], "base_version": 1, "notes": "new notes"})
    before = stored(database_url, "customers", record["id"])
    # When a client that saw version 1 sends fields the server already holds
    status, result = post(client, "customers", {"id": record["id"], "base_version": 1, "city": "Leeds",
                                                "notes": "new notes"})
    # Then it is unchanged, not a conflict, and nothing is written
    assert (status, result["status"], result["version"]) == (200, "unchanged", 2)
    assert stored(database_url, "customers", record["id"]) == before


def test_a_new_record_holds_null_where_it_sent_nothing_and_the_servers_time_as_its_timestamps(
    client: FlaskClient, database_url: str
) -> None:
    # Given no customers
    record_id = new_id()
    # When a client creates one with only an id and a name
    status, result = post(client, "customers", {"id": record_id, "name": "New"})
    # Then it is created with null in every other field, and both timestamps at the server's time
    assert (status, result["status"], result["version"]) == (201, "created", 1)
    row = stored(database_url, "customers", record_id)
    assert CANONICAL_TIME.match(row["created_at"]) and row["updated_at"] == row["created_at"]
    assert {k: v for k, v in row.items() if k not in ("id", "name", "created_at", "updated_at")} == dict.fromkeys(
        ("company", "email", "phone", "address", "city", "state", "zip", "country", "notes", "deleted_at"))
    assert result["record"]["created_at"] == row["created_at"]
    # ... and sending it again is unchanged: the timestamps the server chose are kept
    assert post(client, "customers", {"id": record_id, "name": "New"})[1]["status"] == "unchanged"
    assert stored(database_url, "customers", record_id) == row


def test_a_new_customer_needs_a_name_and_an_update_may_not_clear_it(client: FlaskClient, database_url: str) -> None:
    # Given an existing customer
    record = existing_customer(client)
    # When a new customer is sent without a name, and the existing one with its name as null
    new_status, new = post(client, "customers", {"id": new_id(), "phone": "555"})
    clear_status, clear = post(client, "customers", {"id": record["id"], "base_version": 1, "name": None})
    # Then both are rejected naming the field, and the existing customer keeps its name
    assert (new_status, new["status"]) == (422, "rejected") and "name" in new["reason"]
    assert (clear_status, clear["status"]) == (422, "rejected") and "name" in clear["reason"]
    assert list(central_rows(database_url, "customers")) == [record["id"]]
    assert stored(database_url, "customers", record["id"])["name"] == record["name"]


def test_a_partial_quote_update_keeps_its_number_reference_amounts_and_dates(
    client: FlaskClient, database_url: str
) -> None:
    # Given a quote with a number, a customer, amounts and a date
    owner = existing_customer(client)
    quote = {"id": new_id(), "quote_number": "Q-000777", "customer_id": owner["id"], "total_amount": "1500",
             "discount_percent": "12.5", "tax_percent": "20", "valid_until": "2026-12-01", "status": "draft"}
    push(client, "quotes", [quote])
    # When a client sends only its new status
    status, result = post(client, "quotes", {"id": quote["id"], "base_version": 1, "status": "sent"})
    # Then everything else is kept as stored
    assert (status, result["status"]) == (200, "updated")
    row = stored(database_url, "quotes", quote["id"])
    assert (row["status"], row["quote_number"], row["customer_id"]) == ("sent", "Q-000777", owner["id"])
    assert (row["total_amount"], row["discount_percent"], row["tax_percent"], row["valid_until"]) == (
        "1500.00", "12.500", "20.000", "2026-12-01")


def test_a_partial_delete_and_restore_keep_the_records_fields(client: FlaskClient, database_url: str) -> None:
    # Given a customer
    record = existing_customer(client)
    # When a client sends only deleted_at, and later only deleted_at as null
    deleted = post(client, "customers", {"id": record["id"], "base_version": 1, "deleted_at": "2026-03-01T00:00:00Z"})
    gone = stored(database_url, "customers", record["id"])
    restored = post(client, "customers", {"id": record["id"], "base_version": 2, "deleted_at": None})
    # Then the record was a tombstone, then live again, with all its fields throughout
    assert (deleted[1]["status"], restored[1]["status"]) == ("updated", "updated")
    assert gone["deleted_at"] == "2026-03-01T00:00:00.000Z"
    back = stored(database_url, "customers", record["id"])
    assert back["deleted_at"] is None
    for row in (gone, back):
        assert all(row[name] == record[name] for name in ("name", "email", "city", "notes", "created_at"))


def test_a_restored_quote_that_sends_no_number_is_renumbered_when_a_live_quote_took_its_number(
    client: FlaskClient, database_url: str
) -> None:
    # Given a quote deleted (its number freed) and a new quote that then took that number
    owner = existing_customer(client)
    old = {"id": new_id(), "customer_id": owner["id"], "quote_number": "Q-000001"}
    push(client, "quotes", [old])
    post(client, "quotes", {"id": old["id"], "base_version": 1, "deleted_at": "2026-03-01T00:00:00Z"})
    new = {"id": new_id(), "customer_id": owner["id"], "quote_number": "Q-000001"}
    assert push(client, "quotes", [new])[0]["status"] == "created"
    # When the old one is restored by a POST of its deleted_at alone
    status, result = post(client, "quotes", {"id": old["id"], "base_version": 2, "deleted_at": None})
    # Then it is live again under a fresh number, said so, and no two live quotes share one
    assert (status, result["status"]) == (200, "updated")
    assert "renumbered" in result["reason"]
    numbers = [row["quote_number"] for row in central_rows(database_url, "quotes").values()]
    assert len(numbers) == len(set(numbers)) == 2
    assert stored(database_url, "quotes", new["id"])["quote_number"] == "Q-000001"


def test_columns_the_contract_does_not_know_are_never_touched_by_a_push(
    client: FlaskClient, database_url: str
) -> None:
    # Given a central database with a column of its own, filled in by another program
    record = existing_customer(client)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE customers ADD COLUMN loyalty_tier VARCHAR(20)"))
        conn.execute(text("UPDATE customers SET loyalty_tier = 'gold' WHERE id = :id"), {"id": record["id"]})
    # (which raised the record's version, as every write does)
    # When clients push a partial update and a whole record
    assert post(client, "customers", {"id": record["id"], "base_version": 2, "phone": "1"})[1]["status"] == "updated"
    whole = {**record, "phone": "2", "base_version": 3}
    assert post(client, "customers", whole)[1]["status"] == "updated"
    # Then the column holds what the other program wrote
    with engine.connect() as conn:
        tier = conn.execute(text("SELECT loyalty_tier FROM customers WHERE id = :id"), {"id": record["id"]}).scalar_one()
    engine.dispose()
    assert tier == "gold"
