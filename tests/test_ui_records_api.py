"""The records API (docs/UI-API.md, "Records"): listing, searching, creating, updating and
soft-deleting records, each captured as a pending change.

Everything is real except the window: the local SQLite store, the preferences and key file,
the reference server over HTTP as the remote (and in-process for the Device helpers that
make runs and conflicts in the UI's database), Redis with dramatiq's broker for the queue
and the event channel, and the connection monitor (the fixtures of tests/support/fixtures.py).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask

from tests.support.device import Device
from tests.support.sync import server_live
from tests.support.ui import Page, Ui, json_of

CUSTOMER_FIELDS = ["name", "company", "email", "phone", "address", "city", "state", "zip", "country", "notes"]


# -- records ---------------------------------------------------------------------------------


def test_records_list_is_empty_with_the_editable_fields(page: Page) -> None:
    assert json_of(page.get("/api/records/customers")) == {"records": [], "total": 0, "fields": CUSTOMER_FIELDS}
    assert json_of(page.get("/api/records/quotes"))["fields"] == [
        "quote_number", "customer_id", "project_name", "status", "total_amount", "discount_percent", "tax_percent",
        "notes", "valid_until", "created_by"]
    assert json_of(page.get("/api/records/orders"))["fields"] == [
        "order_number", "quote_id", "customer_id", "status", "order_date", "delivery_date", "total_amount",
        "payment_status", "notes"]


def test_creating_a_record_captures_it_as_a_pending_change(ui: Ui, page: Page, here: Device, reference_app: Flask) -> None:
    response = page.post("/api/records/customers",
                         json={"name": "Ann Smith", "email": "ann@example.com", "city": "Lyon", "phone": ""})
    assert response.status_code == 201
    record = json_of(response)["record"]
    assert set(record) == {"id", *CUSTOMER_FIELDS, "created_at", "updated_at", "deleted_at"}
    assert len(record["id"]) == 32 and record["created_at"] and record["updated_at"]
    assert (record["name"], record["email"], record["city"], record["phone"], record["deleted_at"]) == \
        ("Ann Smith", "ann@example.com", "Lyon", None, None)
    meta = ui.metadata("customers", record["id"])
    assert meta is not None and (meta["sync_status"], meta["local_version"]) == ("pending", 1)
    assert json_of(page.get("/api/status"))["entities"]["customers"]["pending"] == 1
    # And the next sync pushes it
    here.sync("customers")
    assert server_live(reference_app, "customers")[record["id"]]["name"] == "Ann Smith"


def test_a_new_quote_answers_with_the_number_it_was_given(ui: Ui, page: Page, here: Device) -> None:
    # Given a desktop holding a block of quote numbers (every sync of quotes keeps one)
    here.sync("quotes")
    # When the user adds a quote without a number
    record = json_of(page.post("/api/records/quotes", json={"project_name": "Shed"}))["record"]
    # Then the answer shows the number the database gave it
    (stored,) = ui.host_sql("SELECT quote_number FROM quotes WHERE id = ?", record["id"])
    assert stored["quote_number"] is not None
    assert record["quote_number"] == stored["quote_number"]


@pytest.mark.parametrize("body", [{}, {"id": "0190f0e0a0b0c0d0e0f0a1b2c3d4e5f6"}], ids=["empty", "read-only-only"])
def test_a_record_with_no_field_values_can_be_added(ui: Ui, page: Page, body: dict[str, Any]) -> None:
    # A blank quote: the database gives it its id, times (and number, when it holds a block)
    response = page.post("/api/records/quotes", json=body)
    assert response.status_code == 201, (response.status_code, response.data[:200])
    record = json_of(response)["record"]
    assert len(record["id"]) == 32 and record["id"] != body.get("id")
    assert ui.metadata("quotes", record["id"])["sync_status"] == "pending"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "status"),
    [({"name": "Bad", "email": "not an email"}, 400), ({"name": "X", "colour": "blue"}, 400), (["name"], 400),
     ({"name": 42}, 400)],
)
def test_creating_an_invalid_record_writes_nothing(ui: Ui, page: Page, body: Any, status: int) -> None:
    response = page.post("/api/records/customers", json=body)
    assert response.status_code == status, response.get_json()
    assert json_of(response)["message"]
    assert ui.host_sql("SELECT count(*) FROM customers")[0][0] == 0
    assert ui.host_sql("SELECT count(*) FROM sync_metadata")[0][0] == 0


def test_records_of_an_unknown_entity_are_404(page: Page) -> None:
    assert page.get("/api/records/invoices").status_code == 404
    assert page.post("/api/records/invoices", json={"name": "x"}).status_code == 404
    assert page.put("/api/records/invoices/abc", json={"name": "x"}).status_code == 404
    assert page.delete("/api/records/invoices/abc").status_code == 404
    assert page.get("/api/records/sync_metadata").status_code == 404


def test_records_list_searches_orders_newest_first_and_pages(ui: Ui, page: Page) -> None:
    ids = {}
    for name, city in (("Ann", "Lyon"), ("Bob", "York"), ("Cid", "lyon-sur-mer"), ("Dee", None)):
        ids[name] = json_of(page.post("/api/records/customers", json={"name": name, "city": city}))["record"]["id"]
        time.sleep(0.005)
    # Newest change first
    listing = json_of(page.get("/api/records/customers"))
    assert [r["name"] for r in listing["records"]] == ["Dee", "Cid", "Bob", "Ann"] and listing["total"] == 4
    # q searches the fields, case-insensitively
    found = json_of(page.get("/api/records/customers?q=LYON"))
    assert sorted(r["name"] for r in found["records"]) == ["Ann", "Cid"] and found["total"] == 2
    assert json_of(page.get("/api/records/customers?q=bo"))["total"] == 1
    assert json_of(page.get("/api/records/customers?q=nobody"))["records"] == []
    # limit and offset page through; total counts all matches
    second = json_of(page.get("/api/records/customers?limit=2&offset=2"))
    assert [r["name"] for r in second["records"]] == ["Bob", "Ann"] and second["total"] == 4
    assert page.get("/api/records/customers?limit=x").status_code == 400
    assert page.get("/api/records/customers?offset=-1").status_code == 400
    # An update moves a record to the top
    page.put(f"/api/records/customers/{ids['Ann']}", json={"notes": "called"})
    assert json_of(page.get("/api/records/customers"))["records"][0]["name"] == "Ann"


def test_records_search_treats_wildcards_as_text(page: Page) -> None:
    page.post("/api/records/customers", json={"name": "Plain", "notes": "100 units"})
    page.post("/api/records/customers", json={"name": "Discount", "notes": "100% off"})
    page.post("/api/records/customers", json={"name": "Under_score"})
    page.post("/api/records/customers", json={"name": "Underscore"})
    assert [r["name"] for r in json_of(page.get("/api/records/customers?q=100%25"))["records"]] == ["Discount"]
    assert [r["name"] for r in json_of(page.get("/api/records/customers?q=r_s"))["records"]] == ["Under_score"]


def test_updating_a_record_changes_it_and_captures_it(ui: Ui, page: Page) -> None:
    created = json_of(page.post("/api/records/customers", json={"name": "Ann", "email": "ann@example.com"}))["record"]
    time.sleep(0.01)
    response = page.put(f"/api/records/customers/{created['id']}", json={"city": "Lyon", "email": "ann@lyon.example"})
    assert response.status_code == 200
    record = json_of(response)["record"]
    assert (record["name"], record["city"], record["email"]) == ("Ann", "Lyon", "ann@lyon.example")
    assert record["updated_at"] > created["updated_at"] and record["created_at"] == created["created_at"]
    meta = ui.metadata("customers", created["id"])
    assert meta is not None and (meta["sync_status"], meta["local_version"]) == ("pending", 2)
    # Blank means empty
    assert json_of(page.put(f"/api/records/customers/{created['id']}", json={"city": "  "}))["record"]["city"] is None


def test_an_invalid_update_writes_nothing(ui: Ui, page: Page) -> None:
    created = json_of(page.post("/api/records/customers", json={"name": "Ann", "email": "ann@example.com"}))["record"]
    path = f"/api/records/customers/{created['id']}"
    for body in ({"email": "not an email"}, {"colour": "blue"}, {"name": ["Ann"]}, "Ann"):
        response = page.put(path, json=body)
        assert response.status_code == 400, body
        assert json_of(response)["message"]
    (row,) = ui.host_sql("SELECT * FROM customers")
    assert (row["email"], row["updated_at"]) == ("ann@example.com", created["updated_at"])
    assert ui.metadata("customers", created["id"])["local_version"] == 1  # type: ignore[index]
    assert page.put("/api/records/customers/nope", json={"name": "x"}).status_code == 404


def test_deleting_a_record_is_a_soft_delete_that_is_captured(ui: Ui, page: Page, here: Device,
                                                             reference_app: Flask) -> None:
    created = json_of(page.post("/api/records/customers", json={"name": "Ann"}))["record"]
    keep = json_of(page.post("/api/records/customers", json={"name": "Bob"}))["record"]
    here.sync("customers")
    # When the user deletes Ann
    response = page.delete(f"/api/records/customers/{created['id']}")
    # Then 204, and the row stays with deleted_at set
    assert response.status_code == 204 and response.data == b""
    (row,) = ui.host_sql("SELECT * FROM customers WHERE id = ?", created["id"])
    assert row["deleted_at"] is not None and row["name"] == "Ann"
    # It is no longer listed, nor editable, nor deletable again
    assert [r["id"] for r in json_of(page.get("/api/records/customers"))["records"]] == [keep["id"]]
    assert page.put(f"/api/records/customers/{created['id']}", json={"name": "x"}).status_code == 404
    assert page.delete(f"/api/records/customers/{created['id']}").status_code == 404
    assert page.delete("/api/records/customers/nope").status_code == 404
    # It is captured, and the next sync deletes it on the server
    assert ui.metadata("customers", created["id"])["sync_status"] == "pending"  # type: ignore[index]
    here.sync("customers")
    assert set(server_live(reference_app, "customers")) == {keep["id"]}
