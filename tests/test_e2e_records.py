"""The record form and lists as a shop owner meets them in the first hour: ``craftsync run
--browser`` as a subprocess with its real workers and UI server, the reference server as a
subprocess, and Debian's Chromium typing into the page (the fixtures of tests/support/fixtures.py).

Linking a quote to its customer and an order to its quote by picking names, a customer's
quotes one click away, refusals in words next to each field, and lists readable at 800 px.
What the page stored is read from the local SQLite file with plain sqlite3. The screenshots
record-picker.png, record-errors.png, record-filter.png and record-list-800.png in
docs/screenshots/ are taken here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e import (
    DesktopRun,
    RemoteServer,
    UiPage,
    chromium,  # noqa: F401  (fixture)
    local_rows,
    remote_env,
    ui_post,
    wait_run,
    write_preferences,
)
from tests.support.worker import RedisDB, redis_db  # noqa: F401  (fixture)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

#: How the browser reports an answer of 400; the page shows its words instead (those are expected).
REFUSED = "Failed to load resource: the server responded with a status of 400 (BAD REQUEST)"
NARROW = {"width": 800, "height": 760}


@pytest.fixture
def shop(chromium: Any, tmp_path: Path, redis_db: RedisDB, remote_server: RemoteServer,  # noqa: F811
         desktop: Callable[..., DesktopRun]) -> DesktopRun:  # noqa: F811
    """A desktop that syncs only when asked, on the test's own Redis and server (and a browser
    to drive it: without Chromium the test skips before starting anything)."""
    home = tmp_path / "home"
    write_preferences(home, sync_on_launch=False, auto_sync=False)
    return desktop(home, **remote_env(redis_db, remote_server))


def add(run: DesktopRun, entity: str, **fields: Any) -> dict[str, Any]:
    """A record added through the UI server, as the form would add it."""
    return dict(ui_post(run, f"/api/records/{entity}", fields)["record"])


def rows(run: DesktopRun, sql: str, *args: Any) -> list[Any]:
    return local_rows(run.home / "craftsync.db", sql, *args)


def numbered(run: DesktopRun) -> None:
    """Sync quotes and orders once, so that this desktop holds blocks of numbers to give out."""
    for entity in ("quotes", "orders"):
        run_id = ui_post(run, "/api/sync", {"entities": [entity], "direction": "both"})["run_id"]
        assert wait_run(run, run_id, timeout=60)["status"] == "completed"


def open_records(ui: UiPage, entity: str) -> None:
    ui.page.click(f"#records-tab-{entity}")
    ui.page.wait_for_selector(f"#records-panel-{entity}:not([hidden])")


def column_texts(ui: UiPage, entity: str, heading: str) -> list[str]:
    """The texts of one column of a list, by its heading."""
    return list(ui.page.evaluate("""([entity, heading]) => {
        const table = document.querySelector('#records-' + entity);
        const at = [...table.tHead.rows[0].cells].findIndex((th) => th.textContent.trim() === heading);
        return [...table.tBodies[0].querySelectorAll('tr[data-id]')].map((tr) => tr.cells[at].textContent.trim());
    }""", [entity, heading]))


def field_state(ui: UiPage, name: str) -> dict[str, Any]:
    """What a person (and a screen reader) gets from one field of the record form."""
    return dict(ui.page.evaluate("""(name) => {
        const input = document.getElementById('record-field-' + name);
        const message = document.getElementById('record-error-' + name);
        return {
            message: message.hidden ? '' : message.textContent,
            highlighted: input.closest('.field').classList.contains('field-invalid'),
            invalid: input.getAttribute('aria-invalid'),
            describedby: input.getAttribute('aria-describedby'),
            focused: document.activeElement === input,
            under: !!(input.closest('.field').compareDocumentPosition(message) & Node.DOCUMENT_POSITION_CONTAINED_BY),
        };
    }""", name))


def options(ui: UiPage, name: str) -> list[str]:
    ui.page.wait_for_selector(f"#record-field-{name}-options [role=option]")
    return [t.strip() for t in ui.page.locator(f"#record-field-{name}-options [role=option]").all_inner_texts()]


def page_errors(ui: UiPage) -> list[str]:
    return [e for e in ui.errors if REFUSED not in e]


def test_a_quote_is_linked_to_its_customer_by_typing_part_of_the_name_and_picking_it_and_the_lists_show_names(
    shop: DesktopRun, open_ui: Callable[..., UiPage],  # noqa: F811
) -> None:
    # Given three customers, and a desktop with quote and order numbers to give out
    anna = add(shop, "customers", name="Anna Schmidt", company="Maple Craft Co.", email="anna@maple.example")
    add(shop, "customers", name="Annabel Lee", company="Lee Joinery", email="annabel@lee.example")
    add(shop, "customers", name="Bob Stone", company="Stone & Sons")
    numbered(shop)
    ui = open_ui(shop)
    page = ui.page
    open_records(ui, "quotes")

    # When the user adds a quote and types "schm" into the customer picker
    page.click("#record-add")
    page.wait_for_selector("#record-dialog[open]")
    picker = "#record-field-customer_id"
    assert page.get_attribute(picker, "role") == "combobox"
    assert page.text_content(f"label[for='{picker[1:]}']") == "Customer"
    assert page.evaluate("() => document.activeElement.id") == "record-field-customer_id"  # the first field
    page.keyboard.type("schm")
    # Then the one match shows her name and company (never an id)
    assert options(ui, "customer_id") == ["Anna Schmidt\nMaple Craft Co. · anna@maple.example"]
    # ... typing "ann" instead lists both Annas; the arrow keys move through them
    page.fill(picker, "ann")
    page.wait_for_function(
        "() => document.querySelectorAll('#record-field-customer_id-options [role=option]').length === 2")
    page.keyboard.press("ArrowDown")
    assert page.get_attribute(picker, "aria-expanded") == "true"
    assert page.get_attribute(picker, "aria-activedescendant") == "record-field-customer_id-option-0"
    ui.screenshot("record-picker.png")
    # ... Esc closes the list and not the dialog
    page.keyboard.press("Escape")
    assert page.get_attribute(picker, "aria-expanded") == "false" and page.is_visible("#record-dialog[open]")
    # When she picks Anna with ↓ and Enter (Enter picks, it does not save yet)
    page.keyboard.press("ArrowDown")
    page.wait_for_selector("#record-field-customer_id-option-0")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    assert page.input_value(picker) == "Anna Schmidt · Maple Craft Co."
    assert page.is_visible("#record-dialog[open]")
    page.fill("#record-field-project_name", "Oak table")
    page.fill("#record-field-total_amount", "1500")
    page.click("#record-save")
    page.wait_for_selector("#record-dialog", state="hidden")
    # Then the quote is hers in the local database, with the total as the server will hold it
    (quote,) = rows(shop, "SELECT * FROM quotes")
    assert (quote["customer_id"], quote["total_amount"]) == (anna["id"], "1500.00")
    assert quote["quote_number"].startswith("Q-")
    # ... and the quotes list shows her name
    ui.wait_for(lambda: column_texts(ui, "quotes", "Customer") == ["Anna Schmidt"], timeout=10,
                what="the quotes list to show the customer's name")
    ui.wait_for(lambda: ui.text("#records-message") == f"Saved {quote['quote_number']} · Oak table.", timeout=10,
                what="the saved message")

    # When the user adds an order and picks the quote by its project's name, with the mouse
    open_records(ui, "orders")
    page.click("#record-add")
    page.wait_for_selector("#record-dialog[open]")
    page.fill("#record-field-quote_id", "oak")
    assert options(ui, "quote_id") == [f"{quote['quote_number']}\nOak table · Anna Schmidt"]
    page.click("#record-field-quote_id-option-0")
    # Then the order's customer is filled in from the quote
    assert page.input_value("#record-field-quote_id") == f"{quote['quote_number']} · Oak table"
    assert page.input_value("#record-field-customer_id") == "Anna Schmidt · Maple Craft Co."
    page.fill("#record-field-delivery_date", "2026-12-01T10:00")
    page.click("#record-save")
    page.wait_for_selector("#record-dialog", state="hidden")
    (order,) = rows(shop, "SELECT * FROM orders")
    assert (order["quote_id"], order["customer_id"], order["delivery_date"]) == (quote["id"], anna["id"], "2026-12-01")
    # ... and the orders list shows the quote's number and the customer's name
    ui.wait_for(lambda: column_texts(ui, "orders", "Customer") == ["Anna Schmidt"], timeout=10,
                what="the orders list to show the customer's name")
    assert column_texts(ui, "orders", "Quote") == [quote["quote_number"]]
    # ... and searching the orders by the customer's name finds it
    page.fill("#records-search", "schmidt")
    ui.wait_for(lambda: ui.text("#records-range") == "1–1 of 1", timeout=10, what="the search to find the order")

    # When the user clears the order's customer in the editor and saves
    page.click(f"#records-orders [data-action='edit'][data-id='{order['id']}']")
    page.wait_for_selector("#record-dialog[open]")
    assert page.input_value("#record-field-customer_id") == "Anna Schmidt · Maple Craft Co."
    page.click("#record-field-customer_id-clear")
    assert page.input_value("#record-field-customer_id") == ""
    page.click("#record-save")
    page.wait_for_selector("#record-dialog", state="hidden")
    # Then the order has no customer any more, and keeps its quote
    (order,) = rows(shop, "SELECT quote_id, customer_id FROM orders")
    assert (order["quote_id"], order["customer_id"]) == (quote["id"], None)
    assert page_errors(ui) == []


def test_a_customers_quotes_and_orders_are_one_click_away_and_the_chip_removes_the_filter(
    shop: DesktopRun, open_ui: Callable[..., UiPage],  # noqa: F811
) -> None:
    anna = add(shop, "customers", name="Anna Schmidt", company="Maple Craft Co.")
    bob = add(shop, "customers", name="Bob Stone")
    numbered(shop)
    for project, customer, total in (("Oak table", anna, "1500"), ("Ash chair", anna, "420.5"),
                                     ("Pine shelf", bob, "89")):
        add(shop, "quotes", project_name=project, customer_id=customer["id"], total_amount=total, status="sent")
    add(shop, "orders", customer_id=bob["id"], status="new")
    ui = open_ui(shop)
    page = ui.page
    page.wait_for_selector(f"#records-customers [data-action='quotes'][data-id='{anna['id']}']")

    # When the user presses "Quotes" on Anna's row
    assert page.get_attribute(f"#records-customers [data-action='quotes'][data-id='{anna['id']}']",
                              "aria-label") == "Quotes of Anna Schmidt · Maple Craft Co."
    page.click(f"#records-customers [data-action='quotes'][data-id='{anna['id']}']")
    # Then the quotes tab shows hers only, with a chip that says so
    page.wait_for_selector("#records-panel-quotes:not([hidden])")
    assert page.get_attribute("#records-tab-quotes", "aria-selected") == "true"
    assert ui.text("#records-filter .chip-text") == "Customer: Anna Schmidt"
    ui.wait_for(lambda: sorted(column_texts(ui, "quotes", "Project")) == ["Ash chair", "Oak table"], timeout=10,
                what="Anna's two quotes")
    assert set(column_texts(ui, "quotes", "Customer")) == {"Anna Schmidt"}
    ui.screenshot("record-filter.png")
    # ... a quote added now is hers already
    page.click("#record-add")
    page.wait_for_selector("#record-dialog[open]")
    assert page.input_value("#record-field-customer_id") == "Anna Schmidt · Maple Craft Co."
    page.click("#record-cancel")
    # When she removes the chip
    page.click("#records-filter-remove")
    # Then every quote is listed again, and the chip is gone
    ui.wait_for(lambda: len(column_texts(ui, "quotes", "Project")) == 3, timeout=10, what="all three quotes")
    assert page.is_hidden("#records-filters")
    # And Bob's orders are one click away too
    open_records(ui, "customers")
    page.click(f"#records-customers [data-action='orders'][data-id='{bob['id']}']")
    page.wait_for_selector("#records-panel-orders:not([hidden])")
    ui.wait_for(lambda: column_texts(ui, "orders", "Customer") == ["Bob Stone"], timeout=10, what="Bob's order")
    assert ui.text("#records-filter .chip-text") == "Customer: Bob Stone"
    assert page_errors(ui) == []


def test_bad_input_in_every_kind_of_field_is_named_in_words_under_the_field_which_is_highlighted(
    shop: DesktopRun, open_ui: Callable[..., UiPage],  # noqa: F811
) -> None:
    ui = open_ui(shop)
    page = ui.page
    page.wait_for_selector("#records-customers td.empty")

    # A customer without a name and with a bad e-mail address
    page.click("#record-add")
    page.wait_for_selector("#record-dialog[open]")
    assert page.text_content("label[for='record-field-name']") == "Name *"
    assert page.get_attribute("#record-field-name", "aria-required") == "true"
    page.fill("#record-field-email", "anna at example")
    page.fill("#record-field-notes", "x" * 10_001)
    page.click("#record-save")
    page.wait_for_selector("#record-error-name:not([hidden])")
    assert field_state(ui, "name") == {"message": "Name is required", "highlighted": True, "invalid": "true",
                                       "describedby": "record-error-name", "focused": True, "under": True}
    assert field_state(ui, "email")["message"] == "Enter an e-mail address like anna@example.com"
    assert field_state(ui, "notes")["message"] == "At most 10,000 characters (this has 10,001)"
    assert ui.text("#record-error") == "Check the highlighted fields."
    assert rows(shop, "SELECT count(*) FROM customers")[0][0] == 0
    # ... typing into a field clears its message
    page.keyboard.type("Anna Schmidt")
    assert field_state(ui, "name") == {"message": "", "highlighted": False, "invalid": None, "describedby": None,
                                       "focused": True, "under": True}
    page.fill("#record-field-email", "anna@maple.example")
    page.fill("#record-field-company", "Maple Craft Co.")
    page.fill("#record-field-notes", "Prefers oak.")
    page.click("#record-save")
    page.wait_for_selector("#record-dialog", state="hidden")
    assert tuple(rows(shop, "SELECT name, email FROM customers")[0]) == ("Anna Schmidt", "anna@maple.example")
    # ... and the line that says so ends with one full stop, though the company's name has one
    ui.wait_for(lambda: ui.text("#records-message") == "Saved Anna Schmidt · Maple Craft Co.", timeout=10,
                what="the saved message")

    # A quote with money, percentage and date written as people write them, and a customer typed, not picked
    open_records(ui, "quotes")
    page.click("#record-add")
    page.wait_for_selector("#record-dialog[open]")
    page.fill("#record-field-customer_id", "Nobody Known")
    page.fill("#record-field-total_amount", "12,50")
    page.fill("#record-field-discount_percent", "101")
    page.fill("#record-field-valid_until", "tomorrow")
    page.click("#record-save")
    # The customer is checked first, on this computer (nothing was picked)
    page.wait_for_selector("#record-error-customer_id:not([hidden])")
    assert field_state(ui, "customer_id")["message"] == "Choose a customer from the list"
    assert field_state(ui, "customer_id")["focused"]
    page.click("#record-field-customer_id-clear")
    page.click("#record-save")
    page.wait_for_selector("#record-error-total_amount:not([hidden])")
    expected = {
        "total_amount": "Enter an amount like 1250.00",
        "discount_percent": "Enter a percentage from 0 to 100 with at most 3 decimals",
        "valid_until": "Enter a date like 2026-12-31",
    }
    for name, message in expected.items():
        state = field_state(ui, name)
        assert (state["message"], state["highlighted"], state["invalid"], state["describedby"], state["under"]) == \
            (message, True, "true", f"record-error-{name}", True), (name, state)
    assert field_state(ui, "total_amount")["focused"]  # the first bad field in the form
    assert field_state(ui, "customer_id")["message"] == ""
    ui.screenshot("record-errors.png")
    # ... corrected, it is saved in the canonical form
    page.fill("#record-field-total_amount", "12.5")
    page.fill("#record-field-discount_percent", "12.5")
    page.fill("#record-field-valid_until", "2026-12-31")
    page.click("#record-save")
    page.wait_for_selector("#record-dialog", state="hidden")
    (quote,) = rows(shop, "SELECT total_amount, discount_percent, valid_until FROM quotes")
    assert tuple(quote) == ("12.50", "12.500", "2026-12-31")

    # An order's date and amount, corrected one at a time
    open_records(ui, "orders")
    page.click("#record-add")
    page.wait_for_selector("#record-dialog[open]")
    page.fill("#record-field-order_date", "tomorrow")
    page.fill("#record-field-total_amount", "1.005")
    page.click("#record-save")
    page.wait_for_selector("#record-error-order_date:not([hidden])")
    assert field_state(ui, "order_date")["message"] == "Enter a date like 2026-12-31"
    assert field_state(ui, "total_amount")["message"] == "Enter an amount like 1250.00, with at most 2 decimals"
    assert ui.text("#record-error") == "Check the highlighted fields."
    page.fill("#record-field-order_date", "2026-12-01")
    page.click("#record-save")
    page.wait_for_selector("#record-error-total_amount:not([hidden])")
    assert field_state(ui, "order_date")["message"] == ""
    assert ui.text("#record-error") == "Check the highlighted field."
    page.fill("#record-field-total_amount", "1")
    page.click("#record-save")
    page.wait_for_selector("#record-dialog", state="hidden")
    assert tuple(rows(shop, "SELECT order_date, total_amount FROM orders")[0]) == ("2026-12-01", "1.00")
    assert page_errors(ui) == []


def test_the_lists_are_readable_at_800_pixels_with_long_emails_cities_and_notes(
    shop: DesktopRun, open_ui: Callable[..., UiPage],  # noqa: F811
) -> None:
    add(shop, "customers", name="Anna Schmidt", company="Maple Craft Co.",
        email="anna.schmidt-weber@maple-craft-cooperative.example", city="Saint-Rémy-de-Provence",
        phone="+33 4 90 92 00 00", notes="Oak " * 2500)
    add(shop, "customers", name="Bob Stone", company="Stone & Sons", email="bob@stone.example", city="Leeds")
    ui = open_ui(shop, viewport=NARROW)
    page = ui.page
    page.wait_for_selector("#records-customers tbody tr[data-id]")
    cells = page.evaluate("""() => [...document.querySelectorAll('#records-customers tbody .cell')]
        .filter((el) => el.offsetParent !== null)
        .map((el) => ({text: el.textContent, lines: el.getClientRects().length, height: el.offsetHeight,
                       cut: el.scrollWidth > el.clientWidth, title: el.title}))""")
    # Every value shown is on one line: nothing is broken mid-word
    assert cells and all(c["lines"] == 1 and c["height"] < 24 for c in cells), cells
    email = next(c for c in cells if c["text"].startswith("anna.schmidt"))
    assert email["cut"] and email["title"] == "anna.schmidt-weber@maple-craft-cooperative.example"
    assert any(c["text"] == "Saint-Rémy-de-Provence" for c in cells)
    # Every row's buttons are inside the window, and the page itself does not scroll sideways
    right = page.evaluate("""() => Math.max(...[...document.querySelectorAll('#records-customers [data-action]')]
        .map((b) => b.getBoundingClientRect().right))""")
    assert right <= NARROW["width"], right
    widths = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], widths
    ui.screenshot("record-list-800.png")
    # In a wide window the 10,000-character note is one short cell with "…"
    page.set_viewport_size({"width": 1500, "height": 820})
    note = page.evaluate("""() => {
        const el = [...document.querySelectorAll('#records-customers tbody .cell')]
            .find((c) => c.textContent.startsWith('Oak'));
        return {length: el.textContent.length, end: el.textContent.slice(-1), lines: el.getClientRects().length,
                width: el.getBoundingClientRect().width};
    }""")
    assert note["length"] <= 120 and note["end"] == "…" and note["lines"] == 1 and note["width"] < 200, note
    # ... and at the window's default size every button is still inside the window
    for width in (1500, 1280, 1024):
        page.set_viewport_size({"width": width, "height": 820})
        right = page.evaluate("""() => Math.max(...[...document.querySelectorAll('#records-customers [data-action]')]
            .map((b) => b.getBoundingClientRect().right))""")
        assert right <= width, (width, right)
    assert page_errors(ui) == []
