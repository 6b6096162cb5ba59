"""The first hour of a new user, from the outside, in real Chromium and in the real window.

In Chromium the app starts exactly as the README says: a fresh clone of this repository, an
empty HOME, no CraftSync variable, and ``./run --browser`` (which sets up its own ``.venv``).
In the window it is ``craftsync run`` on an empty HOME under Xvfb. Then one journey, as a
person does it, with clicks and typing (tests/support/driver.py):

1. the status says Online and the demo records are listed;
2. add a customer, a quote for that customer through the picker, an order for that quote;
3. sync each entity, then all; each card says which direction ran;
4. set the conflict policy to "Ask me", meet a conflict, settle it field by field;
5. enter bad input of every kind and read the sentence under the field;
6. restart the app and find everything as it was left.

What is stored is checked raw, with plain SQL on the local file and on the demo server's
central database. Screenshots of each step go to docs/screenshots/first-hour-*.png.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from tests.support.e2e import (
    SCREENSHOTS,
    DesktopRun,
    UiPage,
    chromium,  # noqa: F401  (fixture)
    display,  # noqa: F401  (fixture)
    free_port,
    ui_get,
    user_env,
)
from tests.support.process import wait_until
from tests.support.driver import Driver, PlaywrightDriver, WindowDriver
from tests.support.worker import CRAFTSYNC, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

#: Seconds the first ``./run`` of a fresh clone gets to set up .venv and print its UI line.
SETUP_TIMEOUT_S: Final = 600.0
#: Seconds a sync run gets to end (the demo data is small).
SYNC_TIMEOUT_S: Final = 60.0
WAIT_S: Final = 20.0


# -- what the user sees and does ---------------------------------------------------------------


def data_dir(home: Path) -> Path:
    return home / ".local" / "share" / "craftsync"


def raw(database: Path, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows exactly as stored, read with plain SQL on a connection of the test's own."""
    conn = sqlite3.connect(database)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql, args)]
    finally:
        conn.close()


class Journey:
    """The steps of the first hour, on one driver and one running app."""

    def __init__(self, ui: Driver, run: DesktopRun, home: Path, shots: str) -> None:
        self.ui, self.run, self.home, self.shots = ui, run, home, shots

    @property
    def local(self) -> Path:
        return data_dir(self.home) / "craftsync.db"

    @property
    def central(self) -> Path:
        return data_dir(self.home) / "demo-central.db"

    def shot(self, step: str) -> None:
        self.ui.screenshot(SCREENSHOTS / f"{self.shots}-{step}.png")

    def tab(self, name: str) -> None:
        self.ui.click(f"#tab-{name}")
        self.ui.wait_for(f"#panel-{name}", timeout=WAIT_S, what=f"the {name} tab")

    def records(self, entity: str) -> None:
        self.tab("records")
        self.ui.click(f"#records-tab-{entity}")
        self.ui.wait_for(f"js:document.querySelector('#records-tab-{entity}').getAttribute('aria-selected') === 'true'",
                         timeout=WAIT_S, what=f"the {entity} list")

    def row_text(self, entity: str, record_id: str) -> str:
        selector = f"#records-{entity} tr[data-id='{record_id}']"
        self.ui.wait_for(selector, timeout=WAIT_S, what=f"the {entity} row {record_id}")
        return self.ui.text(selector)

    def open_form(self) -> None:
        self.ui.click("#record-add")
        self.ui.wait_for("js:document.querySelector('#record-dialog').open", timeout=WAIT_S, what="the record form")

    def save_form(self) -> None:
        self.ui.click("#record-save")
        self.ui.wait_for("js:!document.querySelector('#record-dialog').open", timeout=WAIT_S,
                         what="the record form to close after Save")

    def pick(self, field: str, typed: str, expect: str) -> None:
        """Type part of a name into a picker and choose the first match, which must read ``expect``."""
        self.ui.fill(f"#record-field-{field}", typed)
        option = f"#record-field-{field}-option-0"
        self.ui.wait_text(option, expect, timeout=WAIT_S, what=f"the {field} picker to offer {expect}")
        self.ui.click(option)

    def newest(self, entity: str, where: str, *args: Any) -> dict[str, Any]:
        rows = raw(self.local, f"SELECT * FROM {entity} WHERE {where}", *args)
        assert len(rows) == 1, rows
        return rows[0]

    def sync(self, key: str) -> str:
        """Press the card's Sync button and wait for the end of that run; the card's summary line.

        The card may still show the end of an earlier run: only an end reached after the card
        left it (queued, running) counts, noted by an observer set up before the click."""
        self.ui.evaluate(f"""() => {{
            const card = document.querySelector('#sync-card-{key}');
            window.__left_{key} = false;
            new MutationObserver(() => {{
                if (['queued', 'running'].includes(card.dataset.state)) window.__left_{key} = true;
            }}).observe(card, {{attributes: true, attributeFilter: ['data-state']}});
        }}""")
        self.ui.click(f"#sync-{key}")
        return str(self.ui.wait_for(
            f"js:(() => {{ const s = document.querySelector('#sync-card-{key}').dataset.state;"
            f" return window.__left_{key} && ['completed', 'conflicts', 'failed'].includes(s) &&"
            f" document.querySelector('#progress-text-{key}').innerText; }})()",
            timeout=SYNC_TIMEOUT_S, what=f"the {key} sync to end"))

    # -- the steps -----------------------------------------------------------------------------

    def online_with_demo_data(self) -> None:
        self.ui.wait_text("#status-text", "Online", timeout=90, what="the status to say Online")
        self.records("customers")
        self.ui.wait_for("js:document.querySelectorAll('#records-customers tbody tr[data-id]').length >= 10",
                         timeout=60, what="the demo customers to be listed")
        self.shot("1-online")

    def add_customer_quote_and_order(self) -> dict[str, str]:
        self.records("customers")
        self.open_form()
        self.ui.fill("#record-field-name", "Greta Holm")
        self.ui.fill("#record-field-company", "Holm Woodworks")
        self.ui.fill("#record-field-email", "greta@holm-woodworks.example")
        self.ui.fill("#record-field-phone", "555-0100")
        self.ui.fill("#record-field-city", "Bergen")
        self.save_form()
        customer = self.newest("customers", "name = 'Greta Holm'")
        assert "Holm Woodworks" in self.row_text("customers", customer["id"])

        self.records("quotes")
        self.open_form()
        self.pick("customer_id", "Greta", "Greta Holm")
        self.ui.fill("#record-field-project_name", "Oak dining table")
        self.ui.fill("#record-field-total_amount", "1500")
        self.ui.fill("#record-field-discount_percent", "12.5")
        self.ui.fill("#record-field-valid_until", "2026-12-31")
        self.shot("2-quote-picker")
        self.save_form()
        quote = self.newest("quotes", "project_name = 'Oak dining table'")
        assert quote["customer_id"] == customer["id"]
        assert (quote["total_amount"], quote["discount_percent"]) == ("1500.00", "12.500")  # as the server keeps them
        assert "Greta Holm" in self.row_text("quotes", quote["id"])

        self.records("orders")
        self.open_form()
        self.pick("quote_id", "Oak dining", "Oak dining table")
        # Choosing the quote filled in its customer
        self.ui.wait_for("js:document.querySelector('#record-field-customer_id').value.includes('Greta Holm')",
                         timeout=WAIT_S, what="the order's customer to follow its quote")
        self.ui.fill("#record-field-total_amount", "1500")
        self.ui.fill("#record-field-delivery_date", "2026-12-01T10:00")
        self.save_form()
        order = self.newest("orders", "quote_id = ?", quote["id"])
        assert (order["customer_id"], order["total_amount"], order["delivery_date"]) == (
            customer["id"], "1500.00", "2026-12-01")
        shown = self.row_text("orders", order["id"])
        assert "Greta Holm" in shown and quote["quote_number"] in shown
        self.shot("3-order")
        return {"customer": customer["id"], "quote": quote["id"], "order": order["id"]}

    def sync_each_and_all(self, ids: dict[str, str]) -> None:
        for entity in ("customers", "quotes", "orders"):
            summary = self.sync(entity)
            assert summary.startswith("Both ways done"), summary
            assert "1 pushed" in summary, summary
        summary = self.sync("all")
        assert summary.startswith("Both ways done"), summary
        self.shot("4-synced")
        # The device holds exactly what the central database holds, field by field
        for entity, record_id in (("customers", ids["customer"]), ("quotes", ids["quote"]), ("orders", ids["order"])):
            local = self.newest(entity, "id = ?", record_id)
            central = raw(self.central, f"SELECT * FROM {entity} WHERE id = ?", record_id)[0]
            for name, value in local.items():
                assert central[name] == value, (entity, name, value, central[name])

    def ask_me_then_settle_a_conflict_field_by_field(self, ids: dict[str, str]) -> None:
        self.tab("settings")
        self.ui.select("#settings-policy", "manual")
        self.ui.click("#settings-save")
        self.ui.wait_text("#settings-result", "Saved", timeout=WAIT_S, what="the settings to save")
        # The office changes Greta's phone and city on the server (another device, with the key)
        runtime = json.loads((data_dir(self.home) / "runtime.json").read_text())
        office = httpx.Client(base_url=runtime["remote_url"], headers={"Authorization": f"Bearer {runtime['remote_key']}"})
        current = office.get("/customers", params={"since": "0", "limit": 5000}).json()["records"]
        theirs = next(r for r in current if r["id"] == ids["customer"])
        sent = {k: v for k, v in theirs.items() if k != "version"}
        sent.update(phone="555-0199 (office)", city="Oslo", base_version=theirs["version"])
        assert office.post("/customers", json=sent).status_code == 200
        # ... while here the user changes the same phone
        self.records("customers")
        self.ui.click(f"#records-customers [data-action='edit'][data-id='{ids['customer']}']")
        self.ui.wait_for("js:document.querySelector('#record-dialog').open", timeout=WAIT_S, what="the edit form")
        self.ui.fill("#record-field-phone", "555-0101 (shop)")
        self.save_form()
        summary = self.sync("customers")
        assert summary.startswith("Both ways done with conflicts"), summary
        self.ui.wait_text("#conflict-count", "1", timeout=WAIT_S, what="one open conflict")
        self.ui.click("#open-conflicts")
        self.ui.wait_for("input[name='choice-phone'][value='local']", timeout=WAIT_S, what="the conflict dialog")
        self.shot("5-conflict")
        self.ui.click("#choice-phone-local")
        self.ui.click("#resolve-merged")
        self.ui.wait_text("#conflict-message", "Resolved", timeout=WAIT_S, what="the conflict to be settled")
        self.ui.click("#conflict-close")

        def settled() -> dict[str, Any] | None:
            row = raw(self.central, "SELECT phone, city FROM customers WHERE id = ?", ids["customer"])[0]
            return row if row["phone"] == "555-0101 (shop)" else None

        # The shop's phone won, the office's city stayed (it did not conflict)
        assert wait_until(settled, timeout=SYNC_TIMEOUT_S, interval=0.5, what="the choice to reach the server") == {
            "phone": "555-0101 (shop)", "city": "Oslo"}
        office.close()

    def bad_input_gets_a_sentence_under_the_field(self) -> None:
        self.records("customers")
        self.open_form()
        self.ui.fill("#record-field-email", "anna(at)example")
        self.ui.click("#record-save")
        self.ui.wait_text("#record-error-name", "Name is required", timeout=WAIT_S, what="the name's message")
        assert self.ui.text("#record-error-email") == "Enter an e-mail address like anna@example.com"
        assert self.ui.evaluate("() => document.querySelector('#record-field-name').closest('.field')"
                                ".classList.contains('field-invalid')")
        self.shot("6-bad-input")
        self.ui.click("#record-cancel")
        self.records("quotes")
        self.open_form()
        self.ui.fill("#record-field-total_amount", "12,50")
        self.ui.fill("#record-field-discount_percent", "101")
        self.ui.fill("#record-field-valid_until", "tomorrow")
        self.ui.click("#record-save")
        self.ui.wait_text("#record-error-total_amount", "Enter an amount like 1250.00", timeout=WAIT_S,
                          what="the amount's message")
        assert self.ui.text("#record-error-discount_percent").startswith("Enter a percentage from 0 to 100")
        assert self.ui.text("#record-error-valid_until") == "Enter a date like 2026-12-31"
        for shown in ("Input should", "snake", "regex", "pattern", "Traceback"):
            assert shown not in self.ui.text("#record-dialog")
        self.ui.click("#record-cancel")
        assert raw(self.local, "SELECT count(*) AS n FROM quotes WHERE total_amount = '12,50'")[0]["n"] == 0

    def everything_as_left(self, ids: dict[str, str]) -> None:
        self.ui.wait_text("#status-text", "Online", timeout=90, what="the status to say Online after the restart")
        self.records("orders")
        assert "Greta Holm" in self.row_text("orders", ids["order"])
        self.records("customers")
        assert "Holm Woodworks" in self.row_text("customers", ids["customer"])
        self.tab("settings")
        self.ui.wait_for("js:document.querySelector('#settings-policy').value === 'manual'", timeout=WAIT_S,
                         what="the saved policy")
        assert ui_get(self.run, "/api/settings")["conflict_policy"] == "manual"
        self.shot("7-after-restart")
        assert self.ui.errors == [], self.ui.errors


def first_hour(journey: Journey) -> dict[str, str]:
    """Steps 1 to 5 on one running app; the records made, for step 6."""
    journey.online_with_demo_data()
    ids = journey.add_customer_quote_and_order()
    journey.sync_each_and_all(ids)
    journey.ask_me_then_settle_a_conflict_field_by_field(ids)
    journey.bad_input_gets_a_sentence_under_the_field()
    return ids


# -- in Chromium, from a fresh clone with the README's command ---------------------------------


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Path:
    """This repository as a new user gets it: a clone of its committed state, nothing else."""
    target = tmp_path / "craftsync"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True, timeout=120)
    return target


def test_the_first_hour_in_chromium_from_a_fresh_clone_with_readme_commands(
    tmp_path: Path, fresh_clone: Path, chromium: Any,  # noqa: F811
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    runs: list[DesktopRun] = []

    def launch() -> tuple[DesktopRun, UiPage]:
        run = DesktopRun(home, user_env(home), log=tmp_path / f"run-{len(runs)}.log",
                         argv=[str(fresh_clone / "run"), "--browser"])
        runs.append(run)
        run.start(timeout=SETUP_TIMEOUT_S)
        return run, UiPage(chromium, run).open()

    try:
        run, page = launch()
        assert "Please be careful with folders" not in run.output()  # the installer's chatter stays in its log
        ids = first_hour(Journey(PlaywrightDriver(page.page), run, home, "first-hour"))
        page.close()
        run.stop()
        again, page = launch()
        Journey(PlaywrightDriver(page.page), again, home, "first-hour").everything_as_left(ids)
        page.close()
    finally:
        for one in runs:
            one.stop()


# -- in the real window under Xvfb ---------------------------------------------------------------


@pytest.fixture
def window(tmp_path: Path, display: str) -> Iterator[Callable[[Path], tuple[DesktopRun, WindowDriver]]]:  # noqa: F811
    """Start ``craftsync run`` (no --browser) with its window on the Xvfb display."""
    opened: list[tuple[DesktopRun, WindowDriver | None]] = []

    def open_window(home: Path) -> tuple[DesktopRun, WindowDriver]:
        devtools = free_port()
        env = user_env(home, DISPLAY=display, QTWEBENGINE_REMOTE_DEBUGGING=f"127.0.0.1:{devtools}")
        run = DesktopRun(home, env, log=tmp_path / f"window-{len(opened)}.log", argv=[*CRAFTSYNC, "run"])
        opened.append((run, None))
        run.start()
        driver = WindowDriver(devtools, run.base_url)
        opened[-1] = (run, driver)
        return run, driver

    yield open_window
    for run, driver in opened:
        if driver is not None:
            driver.close()
        run.stop()


def test_the_first_hour_in_the_real_window_under_xvfb(
    tmp_path: Path, window: Callable[[Path], tuple[DesktopRun, WindowDriver]],
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    run, driver = window(home)
    ids = first_hour(Journey(driver, run, home, "window-first-hour"))
    driver.close()
    run.stop()
    again, driver = window(home)
    Journey(driver, again, home, "window-first-hour").everything_as_left(ids)
