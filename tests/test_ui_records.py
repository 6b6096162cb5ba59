"""The records API as the record form and lists use it (docs/UI-API.md, "Records"): linking
quotes and orders to customers by picking them, the names shown in the lists, a customer's
quotes and orders, refusals in words next to each field, and canonical stored values.

The UI server is the real one on a real local SQLite store (the fixtures of
tests/support/fixtures.py); stored values are read back with plain sqlite3, never through the
product's own code.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from flask import Flask

from craftsync.shell.ui_server import CSP
from tests.support.device import Device
from tests.support.sync import server_live
from tests.support.ui import Page, Ui

pytestmark = pytest.mark.redis

CANONICAL_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
#: Words of pydantic's own messages, which a shop owner should never see.
LIBRARY_WORDS = ("Input should", "String should", "Value error", "pattern", "^", "_id", "ISO-8601", "decimal string")


def _json(response: Any) -> Any:
    assert response.is_json, (response.status_code, response.data[:200])
    return response.get_json()


def _create(page: Page, entity: str, **fields: Any) -> dict[str, Any]:
    response = page.post(f"/api/records/{entity}", json=fields)
    assert response.status_code == 201, (response.status_code, response.get_json())
    return _json(response)["record"]


def _refusal(response: Any) -> dict[str, Any]:
    """The body of a 400 refusal, checked for the shape every refusal has."""
    assert response.status_code == 400, (response.status_code, response.get_json())
    body = _json(response)
    assert body["error"] == "invalid" and body["message"] in ("Check the highlighted field.",
                                                             "Check the highlighted fields."), body
    assert response.headers["Content-Security-Policy"] == CSP
    for message in body["fields"].values():
        assert not any(word in message for word in LIBRARY_WORDS), message
    return body


def _names(listing: dict[str, Any], key: str = "customer_name") -> list[Any]:
    return [r[key] for r in listing["records"]]


@pytest.fixture
def anna(page: Page) -> dict[str, Any]:
    return _create(page, "customers", name="Anna Schmidt", company="Maple Craft Co.", email="anna@maple.example",
                   city="Lyon")


@pytest.fixture
def bob(page: Page) -> dict[str, Any]:
    return _create(page, "customers", name="Bob Stone", company="Stone & Sons", email="bob@stone.example")


# -- (A) linking by picking ------------------------------------------------------------------


def test_a_quote_is_linked_to_its_customer_by_picking_the_name_and_the_list_shows_the_name(
        page: Page, anna: dict[str, Any], bob: dict[str, Any]) -> None:
    # When the user types "anna" into the quote's customer picker
    (choice,) = _json(page.get("/api/records/customers/choices?q=anna"))["choices"]
    # Then the one match shows her name and company and carries her id
    assert (choice["id"], choice["name"], choice["company"]) == (anna["id"], "Anna Schmidt", "Maple Craft Co.")
    # When the user picks her and saves the quote
    quote = _create(page, "quotes", project_name="Oak table", customer_id=choice["id"])
    # Then the answer and the quotes list show her name, not an id
    assert (quote["customer_name"], quote["customer_company"]) == ("Anna Schmidt", "Maple Craft Co.")
    listing = _json(page.get("/api/records/quotes"))
    assert _names(listing) == ["Anna Schmidt"] and listing["records"][0]["customer_id"] == anna["id"]
    # ... and the form's fields are still the quote's own
    assert "customer_name" not in listing["fields"]


def test_the_customer_picker_finds_customers_by_name_company_or_email_names_first(
        page: Page, anna: dict[str, Any], bob: dict[str, Any]) -> None:
    carla = _create(page, "customers", name="Carla Anders", company="Annapolis Woodworks")
    gone = _create(page, "customers", name="Anna Gone")
    page.delete(f"/api/records/customers/{gone['id']}")

    def picked(q: str) -> list[str]:
        return [c["name"] for c in _json(page.get(f"/api/records/customers/choices?q={q}"))["choices"]]

    assert picked("stone %26") == ["Bob Stone"]  # by company, "&" as typed
    assert picked("BOB@STONE") == ["Bob Stone"]  # by e-mail, any case
    # A name that starts with the text comes before a company that contains it; deleted ones never
    assert picked("anna") == ["Anna Schmidt", "Carla Anders"]
    # Nothing typed yet: the latest first, as many as asked for
    assert picked("") == ["Carla Anders", "Bob Stone", "Anna Schmidt"]
    assert len(_json(page.get("/api/records/customers/choices?limit=2"))["choices"]) == 2
    assert page.get("/api/records/customers/choices?limit=51").status_code == 400
    assert page.get("/api/records/invoices/choices").status_code == 404
    assert carla["id"] in {c["id"] for c in _json(page.get("/api/records/customers/choices"))["choices"]}


def test_an_order_picks_its_quote_by_number_project_or_customer_and_the_list_shows_quote_and_customer(
        ui: Ui, page: Page, anna: dict[str, Any], bob: dict[str, Any]) -> None:
    # Given two quotes, one of them numbered by the host app
    oak = _create(page, "quotes", project_name="Oak table", customer_id=anna["id"], quote_number="Q-000123")
    _create(page, "quotes", project_name="Pine shelf", customer_id=bob["id"])

    def quotes(q: str) -> list[str]:
        return [c["project_name"] for c in _json(page.get(f"/api/records/quotes/choices?q={q}"))["choices"]]

    # The order's quote picker finds a quote by its number, its project and its customer's name
    assert quotes("000123") == quotes("oak") == quotes("schmidt") == ["Oak table"]
    (choice,) = _json(page.get("/api/records/quotes/choices?q=Q-000123"))["choices"]
    # ... and the choice carries the quote's customer, so that picking it fills in the order's
    assert (choice["id"], choice["quote_number"], choice["customer_id"], choice["customer_name"]) == \
        (oak["id"], "Q-000123", anna["id"], "Anna Schmidt")
    order = _create(page, "orders", quote_id=choice["id"], customer_id=choice["customer_id"], status="new")
    # Then the orders list shows the quote's number and the customer's name
    (listed,) = _json(page.get("/api/records/orders"))["records"]
    assert (listed["id"], listed["quote_number"], listed["customer_name"]) == (order["id"], "Q-000123", "Anna Schmidt")
    (row,) = ui.host_sql("SELECT quote_id, customer_id FROM orders")
    assert (row["quote_id"], row["customer_id"]) == (oak["id"], anna["id"])


def test_quotes_and_orders_are_found_by_their_customers_name(
        page: Page, anna: dict[str, Any], bob: dict[str, Any]) -> None:
    oak = _create(page, "quotes", project_name="Oak table", customer_id=anna["id"], quote_number="Q-000777")
    _create(page, "quotes", project_name="Pine shelf", customer_id=bob["id"])
    _create(page, "orders", quote_id=oak["id"], customer_id=anna["id"])
    _create(page, "orders", customer_id=bob["id"])
    assert [r["project_name"] for r in _json(page.get("/api/records/quotes?q=schmidt"))["records"]] == ["Oak table"]
    assert [r["project_name"] for r in _json(page.get("/api/records/quotes?q=maple craft"))["records"]] == \
        ["Oak table"]
    assert _names(_json(page.get("/api/records/orders?q=stone"))) == ["Bob Stone"]
    assert _names(_json(page.get("/api/records/orders?q=Q-000777"))) == ["Anna Schmidt"]


def test_a_customers_quotes_and_orders_are_listed_by_filtering_on_the_customer(
        page: Page, anna: dict[str, Any], bob: dict[str, Any]) -> None:
    oak = _create(page, "quotes", project_name="Oak table", customer_id=anna["id"])
    _create(page, "quotes", project_name="Ash chair", customer_id=anna["id"])
    _create(page, "quotes", project_name="Pine shelf", customer_id=bob["id"])
    _create(page, "orders", quote_id=oak["id"], customer_id=anna["id"])
    _create(page, "orders", customer_id=bob["id"])
    # The quotes of Anna, and only hers, with the total counting them
    hers = _json(page.get(f"/api/records/quotes?customer_id={anna['id']}"))
    assert sorted(r["project_name"] for r in hers["records"]) == ["Ash chair", "Oak table"] and hers["total"] == 2
    # ... searchable within, and pageable
    assert _json(page.get(f"/api/records/quotes?customer_id={anna['id']}&q=oak"))["total"] == 1
    assert _json(page.get(f"/api/records/quotes?customer_id={anna['id']}&limit=1"))["total"] == 2
    # Her orders, and the orders of one quote
    assert _names(_json(page.get(f"/api/records/orders?customer_id={anna['id']}"))) == ["Anna Schmidt"]
    assert _json(page.get(f"/api/records/orders?quote_id={oak['id']}"))["total"] == 1
    # ... and the order form's quote picker can be kept to one customer's quotes the same way
    picked = _json(page.get(f"/api/records/quotes/choices?customer_id={bob['id']}"))["choices"]
    assert [c["project_name"] for c in picked] == ["Pine shelf"]
    # A customer of none, and filters an entity does not have
    assert _json(page.get("/api/records/quotes?customer_id=" + "f" * 32))["records"] == []
    assert page.get(f"/api/records/customers?customer_id={anna['id']}").status_code == 400
    assert page.get(f"/api/records/quotes?quote_id={oak['id']}").status_code == 400


# -- (B) refusals in words, per field --------------------------------------------------------


@pytest.mark.parametrize(
    ("entity", "body", "field", "message"),
    [
        ("customers", {"name": ""}, "name", "Name is required"),
        ("customers", {"name": "   ", "city": "Lyon"}, "name", "Name is required"),
        ("customers", {"company": "No name Ltd"}, "name", "Name is required"),
        ("customers", {"name": "Ann", "email": "anna at example"}, "email",
         "Enter an e-mail address like anna@example.com"),
        ("customers", {"name": "x" * 201}, "name", "At most 200 characters (this has 201)"),
        ("customers", {"name": "Ann", "zip": "1" * 21}, "zip", "At most 20 characters (this has 21)"),
        ("customers", {"name": "Ann", "notes": "x" * 10_001}, "notes", "At most 10,000 characters (this has 10,001)"),
        ("customers", {"name": "Ann\x00"}, "name",
         "This text contains an invisible NUL character, which cannot be saved. Retype it."),
        ("quotes", {"total_amount": "12,50"}, "total_amount", "Enter an amount like 1250.00"),
        ("quotes", {"total_amount": "twelve"}, "total_amount", "Enter an amount like 1250.00"),
        ("quotes", {"total_amount": 12.5}, "total_amount", "Enter an amount like 1250.00"),
        ("quotes", {"total_amount": "12.505"}, "total_amount", "Enter an amount like 1250.00, with at most 2 decimals"),
        ("quotes", {"total_amount": "1e12"}, "total_amount", "Enter an amount from -9999999999.99 to 9999999999.99"),
        ("quotes", {"discount_percent": "101"}, "discount_percent",
         "Enter a percentage from 0 to 100 with at most 3 decimals"),
        ("quotes", {"tax_percent": "7.1234"}, "tax_percent",
         "Enter a percentage from 0 to 100 with at most 3 decimals"),
        ("quotes", {"valid_until": "tomorrow"}, "valid_until", "Enter a date like 2026-12-31"),
        ("quotes", {"customer_id": "Anna Schmidt"}, "customer_id", "Choose a customer from the list"),
        ("orders", {"delivery_date": "2026-02-30"}, "delivery_date", "Enter a date like 2026-12-31"),
        ("orders", {"quote_id": 42}, "quote_id", "Choose a quote from the list"),
        ("orders", {"status": ["new"]}, "status", "Status must be text"),
    ],
)
def test_bad_input_is_refused_with_words_a_shop_owner_reads_at_the_field(
        ui: Ui, page: Page, entity: str, body: dict[str, Any], field: str, message: str) -> None:
    response = page.post(f"/api/records/{entity}", json=body)
    refusal = _refusal(response)
    assert refusal == {"error": "invalid", "message": "Check the highlighted field.", "fields": {field: message}}
    assert ui.host_sql(f"SELECT count(*) FROM {entity}")[0][0] == 0
    assert ui.host_sql("SELECT count(*) FROM sync_metadata")[0][0] == 0


def test_every_bad_field_of_a_record_is_named_at_once(page: Page) -> None:
    response = page.post("/api/records/quotes", json={
        "total_amount": "12,50", "discount_percent": "101", "valid_until": "tomorrow", "project_name": "x" * 201,
        "customer_id": "0" * 32, "notes": "fine"})
    assert _refusal(response) == {"error": "invalid", "message": "Check the highlighted fields.", "fields": {
        "total_amount": "Enter an amount like 1250.00",
        "discount_percent": "Enter a percentage from 0 to 100 with at most 3 decimals",
        "valid_until": "Enter a date like 2026-12-31",
        "project_name": "At most 200 characters (this has 201)",
        "customer_id": "Choose a customer from the list",
    }}


def test_the_names_shown_with_a_record_are_not_fields_it_can_be_sent_with(page: Page, anna: dict[str, Any]) -> None:
    response = page.post("/api/records/quotes", json={"customer_id": anna["id"], "customer_name": "Someone else"})
    assert response.status_code == 400 and _json(response)["message"] == "Not fields of quotes: customer_name."


def test_an_edit_with_a_bad_value_is_refused_at_its_field_and_writes_nothing(ui: Ui, page: Page,
                                                                             anna: dict[str, Any]) -> None:
    path = f"/api/records/customers/{anna['id']}"
    assert _refusal(page.put(path, json={"email": "anna@", "name": ""}))["fields"] == {
        "email": "Enter an e-mail address like anna@example.com", "name": "Name is required"}
    (row,) = ui.host_sql("SELECT name, email, updated_at FROM customers")
    assert tuple(row) == ("Anna Schmidt", "anna@maple.example", anna["updated_at"])


def test_a_reference_to_a_record_not_on_this_computer_is_refused_with_words(ui: Ui, page: Page,
                                                                            anna: dict[str, Any]) -> None:
    # A well-formed id of no customer here, and one of a deleted customer
    gone = _create(page, "customers", name="Gone")
    page.delete(f"/api/records/customers/{gone['id']}")
    for customer_id in ("0123456789abcdef0123456789abcdef", gone["id"]):
        refusal = _refusal(page.post("/api/records/quotes", json={"project_name": "Oak", "customer_id": customer_id}))
        assert refusal["fields"] == {"customer_id": "Choose a customer from the list"}
    refusal = _refusal(page.post("/api/records/orders", json={"quote_id": "f" * 32, "customer_id": anna["id"]}))
    assert refusal["fields"] == {"quote_id": "Choose a quote from the list"}
    assert ui.host_sql("SELECT count(*) FROM quotes")[0][0] == ui.host_sql("SELECT count(*) FROM orders")[0][0] == 0
    # Clearing a picked customer is allowed
    quote = _create(page, "quotes", project_name="Oak", customer_id=anna["id"])
    cleared = _json(page.put(f"/api/records/quotes/{quote['id']}", json={"customer_id": None}))["record"]
    assert (cleared["customer_id"], cleared["customer_name"]) == (None, None)


def test_editing_a_quote_whose_customer_was_deleted_meanwhile_still_saves_the_other_fields(
        ui: Ui, page: Page, anna: dict[str, Any]) -> None:
    quote = _create(page, "quotes", project_name="Oak", customer_id=anna["id"])
    page.delete(f"/api/records/customers/{anna['id']}")
    # The edit does not send the customer (it did not change), so the link is not checked again
    response = page.put(f"/api/records/quotes/{quote['id']}", json={"project_name": "Oak table"})
    assert response.status_code == 200, response.get_json()
    (row,) = ui.host_sql("SELECT project_name, customer_id FROM quotes")
    assert tuple(row) == ("Oak table", anna["id"])


def test_a_bad_value_the_host_app_stored_is_named_when_the_user_edits_another_field(ui: Ui, page: Page) -> None:
    ui.host_sql("INSERT INTO quotes (project_name, total_amount) VALUES ('Oak', '12,50')")
    (row,) = ui.host_sql("SELECT id FROM quotes")
    refusal = _refusal(page.put(f"/api/records/quotes/{row['id']}", json={"project_name": "Oak table"}))
    assert refusal["fields"] == {"total_amount": "Enter an amount like 1250.00"}


# -- (C) canonical values --------------------------------------------------------------------


def test_the_ui_stores_values_as_the_server_will_hold_them(ui: Ui, page: Page, here: Device, reference_app: Flask,
                                                           anna: dict[str, Any]) -> None:
    # When the user saves a quote with loosely written numbers and a date with a time
    quote = _create(page, "quotes", customer_id=anna["id"], project_name="Oak table", total_amount="1500",
                    discount_percent="12.5", tax_percent=" 7 ", valid_until="2026-12-01T10:00")
    # Then the raw row holds the canonical forms, and the answer shows them
    (row,) = ui.host_sql("SELECT * FROM quotes")
    assert (row["total_amount"], row["discount_percent"], row["tax_percent"], row["valid_until"]) == \
        ("1500.00", "12.500", "7.000", "2026-12-01")
    assert (quote["total_amount"], quote["valid_until"]) == ("1500.00", "2026-12-01")
    assert CANONICAL_TIME.match(row["created_at"]) and CANONICAL_TIME.match(row["updated_at"])
    # And after a sync the server holds exactly what the device holds
    here.sync("customers")
    here.sync("quotes")
    (stored,) = ui.host_sql("SELECT * FROM quotes")
    assert server_live(reference_app, "quotes")[quote["id"]] == dict(stored)


def test_an_edit_writes_only_the_changed_fields_in_canonical_form(ui: Ui, page: Page) -> None:
    # Given an order the host app wrote with a loosely written total
    ui.host_sql("INSERT INTO orders (order_number, total_amount) VALUES ('O-000001', '99.5')")
    (row,) = ui.host_sql("SELECT id, updated_at FROM orders")
    time.sleep(0.005)
    # When the user sets the delivery date (as a date-time) and the discount-free status
    response = page.put(f"/api/records/orders/{row['id']}", json={"delivery_date": "2026-12-01T10:00",
                                                                   "status": "confirmed"})
    assert response.status_code == 200, response.get_json()
    # Then the sent fields are stored canonically, the untouched total is left as the host app wrote it
    (after,) = ui.host_sql("SELECT * FROM orders")
    assert (after["delivery_date"], after["status"], after["total_amount"]) == ("2026-12-01", "confirmed", "99.5")
    assert CANONICAL_TIME.match(after["updated_at"]) and after["updated_at"] > row["updated_at"]
