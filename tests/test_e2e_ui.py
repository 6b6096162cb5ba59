"""End to end, as a person uses it: ``craftsync run --browser`` as a subprocess (its real
workers on a real Redis, its UI server, monitor and scheduler), the reference server as a
subprocess, and Debian's Chromium clicking through the page (spec §3, §8, §9).

The screenshots in docs/screenshots/ (main, conflict, settings, history) are taken here, at
the window's default size, so that the README shows what these tests saw.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e import (
    SMALL_VIEWPORT,
    VIEWPORT,
    DesktopRun,
    RemoteServer,
    UiPage,
    local_rows,
    remote_env,
    ui_get,
    ui_post,
    wait_run,
    write_preferences,
)
from tests.support.process import wait_until
from tests.support.worker import RedisDB, redis_db  # noqa: F401  (fixture)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

#: Customers on the server for the progress test.
BULK: int = 3000


def no_page_errors(ui: UiPage) -> None:
    assert ui.errors == [], f"the page reported errors: {ui.errors}"


def test_pressing_sync_customers_shows_the_progress_bar_reaching_the_end_while_real_workers_run_on_real_redis(
    tmp_path: Path, redis_db: RedisDB, remote_server: RemoteServer, desktop: Callable[..., DesktopRun],  # noqa: F811
    open_ui: Callable[..., UiPage],
) -> None:
    # Given: 3,000 customers on the server (another device's), and a desktop that has none yet
    # and does not sync by itself, with its two real worker processes on a real Redis
    remote_server.seed_customers(BULK)
    home = tmp_path / "home"
    write_preferences(home, sync_on_launch=False, auto_sync=False)
    run = desktop(home, **remote_env(redis_db, remote_server))
    ui = open_ui(run)
    ui.wait_for(lambda: ui.state() == "online", timeout=30, what="the indicator to say online")
    assert local_rows(home / "craftsync.db", "SELECT count(*) FROM customers")[0][0] == 0

    # When: the user presses "Sync customers" (both ways)
    started = time.monotonic()
    run_id = ui.sync_customers("both")

    # Then: the run completes, and the card's progress bar ends full at 3,000 of 3,000
    row = wait_run(run, run_id, timeout=180)
    elapsed = time.monotonic() - started
    assert (row["status"], row["pulled"]) == ("completed", BULK), row
    end = ui.wait_card_showed("customers", lambda s: s["state"] == "completed" and "3,000 pulled" in s["text"],
                              timeout=30, what="the end of the run")
    assert end["determinate"] and end["max"] == BULK and end["value"] == BULK, end
    assert end["text"] == "Both ways done · 0 pushed · 3,000 pulled", end
    log = ui.card_log("customers")
    assert any(s["state"] == "running" for s in log[:log.index(end)]), log[:5]
    # ... and the local database holds every one of them
    assert local_rows(home / "craftsync.db", "SELECT count(*) FROM customers WHERE deleted_at IS NULL")[0][0] == BULK
    # ... the card and the header say so too
    ui.wait_for(lambda: ui.text("#sync-meta-customers").startswith("3,000 synced · 0 pending"), timeout=15,
                what="the customers card to count 3,000 synced")
    ui.wait_for(lambda: ui.text("#last-sync") == "just now", timeout=15, what="the header's last sync time")
    # ... and the records list shows them
    ui.wait_for(lambda: "3,000" in ui.text("#records-range"), timeout=15, what="the records list to show 3,000")
    assert ui.page.locator("#records-customers tbody tr").count() == 100  # the first page of 100
    assert ui.state() == "online"
    ui.screenshot("main.png")
    print(f"\n3,000 customers pulled through the UI in {elapsed:.1f} s")

    # And: at the smallest window size the page has no horizontal scroll bar
    ui.page.set_viewport_size(SMALL_VIEWPORT)
    widths = ui.page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"horizontal scroll at 1024x700: scrollWidth {widths[0]} > {widths[1]}"
    no_page_errors(ui)


def test_a_same_field_conflict_between_the_record_editor_and_the_server_resolved_field_by_field_ends_with_the_chosen_values_on_the_server(
    tmp_path: Path, redis_db: RedisDB, remote_server: RemoteServer, desktop: Callable[..., DesktopRun],  # noqa: F811
    open_ui: Callable[..., UiPage],
) -> None:
    # Given: a customer on the server, and a desktop whose user sets the policy to "Ask me"
    (customer_id,) = remote_server.seed_customers(1, prefix="Ada Lovelace")
    original = remote_server.get("customers", customer_id)
    home = tmp_path / "home"
    write_preferences(home, sync_on_launch=False, auto_sync=False)
    run = desktop(home, **remote_env(redis_db, remote_server))
    ui = open_ui(run)
    page = ui.page
    ui.tab("settings")
    page.wait_for_function("() => document.querySelector('#settings-policy').value === 'remote'")
    page.select_option("#settings-policy", "manual")
    page.click("#settings-save")
    ui.wait_for(lambda: ui.text("#settings-result") == "Saved.", timeout=10, what="the settings to save")
    assert ui_get(run, "/api/settings")["conflict_policy"] == "manual"
    ui.tab("records")
    first = ui.sync_customers()
    assert wait_run(run, first, timeout=60)["pulled"] == 1
    ui.wait_card_showed("customers", lambda s: s["state"] == "completed" and "1 pulled" in s["text"], timeout=30,
                        what="the first run's end")

    # ... the user edits the customer's name and phone in the record editor
    edit = page.locator(f'#records-customers [data-action="edit"][data-id="{customer_id}"]')
    edit.wait_for(state="visible", timeout=15_000)
    edit.click()
    page.wait_for_selector("#record-dialog[open]")
    assert page.input_value("#record-field-name") == original["name"]
    page.fill("#record-field-name", "Ada King (desktop)")
    page.fill("#record-field-phone", "+44 20 7946 0001")
    page.click("#record-save")
    page.wait_for_selector("#record-dialog", state="hidden")
    local = local_rows(home / "craftsync.db", "SELECT name, phone, email FROM customers WHERE id = ?", customer_id)[0]
    assert (local["name"], local["phone"]) == ("Ada King (desktop)", "+44 20 7946 0001")

    # ... while someone else changes the same two fields on the server
    theirs = {k: v for k, v in original.items() if k != "version"}
    theirs.update(name="Ada Byron (server)", phone="+44 161 496 0002", base_version=original["version"])
    answer = remote_server.http.post("/customers", json=theirs)
    assert answer.status_code == 200 and answer.json()["status"] == "updated", answer.text

    # When: the user presses "Sync customers"
    second = ui.sync_customers()

    # Then: the run ends with a conflict, the card says so and the header counts it
    assert wait_run(run, second, timeout=60)["status"] == "conflicts"
    shown = ui.wait_card_showed("customers", lambda s: s["state"] == "conflicts", timeout=30, what="the conflict")
    assert shown["text"].startswith("Both ways done with conflicts"), shown
    ui.wait_for(lambda: ui.text("#conflict-count") == "1", timeout=15, what="the conflict count to show 1")

    # When: the user opens the dialog and picks this computer's name and the server's phone
    page.click("#open-conflicts")
    page.wait_for_selector("#conflict-dialog[open] input[name='choice-phone']")
    table = page.locator("#conflict-table")
    assert table.locator("tr[data-field='name'].conflicting").count() == 1
    assert table.locator("tr[data-field='phone'].conflicting").count() == 1
    assert "Ada King (desktop)" in table.inner_text() and "Ada Byron (server)" in table.inner_text()
    ui.screenshot("conflict.png")
    page.check("input[name='choice-name'][value='local']")
    page.check("input[name='choice-phone'][value='remote']")
    page.click("#resolve-merged")
    ui.wait_for(lambda: ui.text("#conflict-message").startswith("Resolved"), timeout=15,
                what="the dialog to say the conflict is resolved")

    # Then: the server ends with the desktop's name and the server's phone, the rest untouched
    def settled() -> dict[str, Any] | None:
        record = remote_server.get("customers", customer_id)
        return record if record["name"] == "Ada King (desktop)" else None

    record = wait_until(settled, timeout=60, interval=0.5, what="the merged record to reach the server")
    assert record["phone"] == "+44 161 496 0002"
    assert (record["email"], record["company"], record["city"]) == (original["email"], original["company"],
                                                                    original["city"])
    ui.wait_for(lambda: ui.text("#conflict-count") == "0", timeout=15, what="the conflict count to drop to 0")
    local = local_rows(home / "craftsync.db", "SELECT name, phone FROM customers WHERE id = ?", customer_id)[0]
    assert (local["name"], local["phone"]) == ("Ada King (desktop)", "+44 161 496 0002")

    # And: the history lists the runs with their outcomes
    page.click("#conflict-close")
    ui.tab("history")
    ui.wait_for(lambda: page.locator("#history-table tbody tr[data-run-id]").count() >= 3, timeout=15,
                what="the history to list the runs")
    assert page.locator(f"#history-table tr[data-run-id='{second}'][data-status='conflicts']").count() == 1
    ui.screenshot("history.png")
    no_page_errors(ui)


def test_a_deletion_here_against_a_10000_character_note_there_names_both_choices_and_keeps_the_dialog_on_screen(
    tmp_path: Path, redis_db: RedisDB, remote_server: RemoteServer, desktop: Callable[..., DesktopRun],  # noqa: F811
    open_ui: Callable[..., UiPage],
) -> None:
    # Given: a customer synced to a desktop that asks about conflicts
    (customer_id,) = remote_server.seed_customers(1, prefix="Nora Larsen")
    home = tmp_path / "home"
    write_preferences(home, sync_on_launch=False, auto_sync=False, conflict_policy="manual")
    run = desktop(home, **remote_env(redis_db, remote_server))
    ui = open_ui(run)
    assert wait_run(run, ui.sync_customers(), timeout=60)["pulled"] == 1
    # ... deleted here by the host app, while the office writes a 10,000-character note on the server
    database = home / "craftsync.db"
    conn = sqlite3.connect(database)
    conn.execute("UPDATE customers SET deleted_at = '2026-12-01T09:00:00.000Z' WHERE id = ?", (customer_id,))
    conn.commit()
    conn.close()
    note = ("Measured the alcove twice; wants walnut, not oak. " * 200)[:10_000]
    theirs = {k: v for k, v in remote_server.get("customers", customer_id).items() if k != "version"}
    theirs.update(notes=note, base_version=remote_server.get("customers", customer_id)["version"])
    assert remote_server.http.post("/customers", json=theirs).status_code == 200
    assert wait_run(run, ui.sync_customers(), timeout=60)["status"] == "conflicts"
    # When: the user opens the conflict
    page = ui.page
    ui.wait_for(lambda: ui.text("#conflict-count") == "1", timeout=15, what="one open conflict")
    page.click("#open-conflicts")
    page.wait_for_selector("#conflict-dialog[open] #conflict-table")
    # Then: the buttons say what each choice does to a deleted record
    assert ui.text("#resolve-local") == "Delete it (as on this computer)"
    assert ui.text("#resolve-remote") == "Keep it (the server's version)"
    # And: the note is folded to its start with its length, and the dialog fits the window
    cell = "#conflict-table tr[data-field='notes'] td:nth-child(3)"
    folded = ui.text(f"{cell} summary")
    assert folded.startswith("Measured the alcove twice") and folded.endswith("(10,000 characters)"), folded
    assert len(folded) < 250 and not page.locator(f"{cell} .value-full").is_visible()
    box = page.locator("#conflict-dialog").bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT["height"], box
    ui.screenshot("conflict-deletion.png")
    # When: the user keeps the server's version, the record is back here with the note
    page.click("#resolve-remote")
    ui.wait_for(lambda: ui.text("#conflict-message").startswith("Resolved"), timeout=15, what="the resolution")
    assert "the server's version is kept" in ui.text("#conflict-message")
    rows = sqlite3.connect(database).execute("SELECT deleted_at, notes FROM customers WHERE id = ?",
                                             (customer_id,)).fetchall()
    assert rows == [(None, note)]
    no_page_errors(ui)


def test_settings_survive_a_restart_and_the_api_key_is_only_ever_shown_masked(
    tmp_path: Path, redis_db: RedisDB, remote_server: RemoteServer, desktop: Callable[..., DesktopRun],  # noqa: F811
    open_ui: Callable[..., UiPage],
) -> None:
    # Given: a first launch (demo server, no remote configured), where the user enters the
    # remote server and its key, and changes every sync preference
    home = tmp_path / "home"
    key = remote_server.key
    first = desktop(home, REDIS_URL=redis_db.url)
    ui = open_ui(first)
    ui.tab("settings")
    page = ui.page
    page.wait_for_function("() => document.querySelector('#settings-interval').value === '30'")
    page.fill("#settings-remote-url", remote_server.url)
    page.fill("#settings-api-key", key)
    page.select_option("#settings-interval", "60")
    page.uncheck("#settings-auto-sync")
    page.uncheck("#settings-sync-on-launch")
    page.select_option("#settings-direction", "push")
    page.select_option("#settings-policy", "local")
    page.click("#settings-save")
    ui.wait_for(lambda: ui.text("#settings-result") == "Saved.", timeout=10, what="the settings to save")
    assert page.input_value("#settings-api-key") == ""
    assert key not in page.content()
    no_page_errors(ui)
    ui.close()  # the window closes with the app

    # When: the app is closed and started again in the same user data dir
    assert first.stop() == 0, first.output()[-2000:]
    assert not (home / "runtime.json").exists()
    second = desktop(home, REDIS_URL=redis_db.url)
    ui2 = open_ui(second)
    ui2.tab("settings")
    page2 = ui2.page
    page2.wait_for_function("() => document.querySelector('#settings-interval').value !== '30'")

    # Then: the form shows what was saved
    form = page2.evaluate("""() => {
        const f = document.querySelector('#settings-form');
        const v = (n) => f.elements.namedItem(n);
        return {remote_url: v('remote_url').value, api_key: v('api_key').value,
                api_key_placeholder: v('api_key').placeholder, auto_sync: v('auto_sync').checked,
                interval_minutes: v('interval_minutes').value, sync_on_launch: v('sync_on_launch').checked,
                default_direction: v('default_direction').value, conflict_policy: v('conflict_policy').value};
    }""")
    assert form == {
        "remote_url": remote_server.url, "api_key": "", "api_key_placeholder": "••••••" + key[-4:], "auto_sync": False,
        "interval_minutes": "60", "sync_on_launch": False, "default_direction": "push", "conflict_policy": "local",
    }
    # ... the saved server and key are the ones in use: the indicator says online
    ui2.wait_for(lambda: ui2.state() == "online", timeout=30, what="the indicator to say online")
    ui2.screenshot("settings.png")

    # And: the key itself never reached the page, any /api/settings answer, the logs or settings.json
    settings = ui_get(second, "/api/settings")
    assert settings["api_key_set"] is True and settings["api_key_masked"] == "••••••" + key[-4:]
    assert ui.settings_bodies and ui2.settings_bodies
    for body in [*ui.settings_bodies, *ui2.settings_bodies, str(settings), page2.content()]:
        assert key not in body
    assert key not in first.output() and key not in second.output()
    assert key not in (home / "settings.json").read_text()
    key_file = home / "api-key"
    assert key_file.read_text().strip() == key
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    no_page_errors(ui2)


def test_the_indicator_goes_offline_when_the_server_stops_then_online_again_and_the_pending_change_is_pushed(
    tmp_path: Path, redis_db: RedisDB, remote_server: RemoteServer, desktop: Callable[..., DesktopRun],  # noqa: F811
    open_ui: Callable[..., UiPage],
) -> None:
    # Given: a desktop online with its server
    home = tmp_path / "home"
    write_preferences(home, sync_on_launch=False)
    run = desktop(home, **remote_env(redis_db, remote_server))
    ui = open_ui(run)
    page = ui.page
    ui.wait_for(lambda: ui.state() == "online", timeout=30, what="the indicator to say online")
    assert ui.text("#pending-count") == "0"

    # When: the server stops
    remote_server.stop()
    stopped = time.monotonic()

    # Then: within 30 s (the monitor checks every 10 s) the indicator says offline
    ui.wait_for(lambda: ui.state() == "offline", timeout=30, what="the indicator to say offline")
    print(f"\noffline shown {time.monotonic() - stopped:.1f} s after the server stopped")

    # When: the user adds a customer while offline
    name = f"Made offline {secrets.token_hex(4)}"
    page.click("#record-add")
    page.wait_for_selector("#record-dialog[open]")
    page.fill("#record-field-name", name)
    page.fill("#record-field-email", "offline@example.com")
    page.click("#record-save")
    page.wait_for_selector("#record-dialog", state="hidden")

    # Then: it waits as a pending change
    ui.wait_for(lambda: ui.text("#pending-count") == "1", timeout=15, what="the pending count to show 1")
    assert ui.state() == "offline"

    # When: the server comes back on the same port with the same database
    remote_server.start()
    back = time.monotonic()

    # Then: the indicator says online again, and the new customer reaches the server without
    # anyone pressing a sync button (the scheduler syncs what waited, on reconnect)
    ui.wait_for(lambda: ui.state() in ("online", "syncing"), timeout=30, what="the indicator to say online again")

    def pushed() -> dict[str, Any] | None:
        return next((r for r in remote_server.live("customers").values() if r["name"] == name), None)

    record = wait_until(pushed, timeout=45, interval=0.5, what="the offline customer to reach the server")
    print(f"pushed {time.monotonic() - back:.1f} s after the server came back")
    assert record["email"] == "offline@example.com"
    ui.wait_for(lambda: ui.text("#pending-count") == "0", timeout=20, what="the pending count to drop to 0")
    ui.wait_for(lambda: ui.state() == "online", timeout=20, what="the indicator to settle on online")
    assert not any(r["status"] == "failed" for r in ui_get(run, "/api/history")["runs"])
    no_page_errors(ui)


def test_a_desktop_follows_only_its_own_syncs_when_another_desktop_shares_the_redis_server(
    tmp_path: Path, redis_db: RedisDB, second_redis_db: RedisDB, remote_server: RemoteServer,  # noqa: F811
    desktop: Callable[..., DesktopRun], open_ui: Callable[..., UiPage],
) -> None:
    # Given: two desktops whose REDIS_URL points at the same Redis server, each with a
    # database number of its own (their queues, locks and workers are separate), and the
    # second one's window open
    remote_server.seed_customers(50)
    homes = tmp_path / "a", tmp_path / "b"
    for home in homes:
        write_preferences(home, sync_on_launch=False, auto_sync=False)
    a = desktop(homes[0], **remote_env(redis_db, remote_server))
    b = desktop(homes[1], **{**remote_env(redis_db, remote_server), "REDIS_URL": second_redis_db.url})
    ui_b = open_ui(b)
    ui_b.wait_for(lambda: ui_b.state() == "online", timeout=30, what="desktop B to be online")
    ui_b.page.evaluate("""() => {
        window.__seen = [];
        const card = document.querySelector('#sync-card-customers');
        const text = document.querySelector('#progress-text-customers');
        new MutationObserver(() => {
            if (card.dataset.state !== 'idle') window.__seen.push(card.dataset.state + ': ' + text.textContent);
        }).observe(card, {attributes: true, subtree: true, childList: true, characterData: true});
    }""")

    # When: desktop A syncs its customers
    run_id = ui_post(a, "/api/sync", {"entities": ["customers"], "direction": "both"})["run_id"]
    assert wait_run(a, run_id, timeout=60)["pulled"] == 50
    time.sleep(3)  # ample time for A's progress events to reach B's page, if they were to

    # Then: desktop B's page shows nothing of A's run: B synced nothing and holds no customers
    assert local_rows(homes[1] / "craftsync.db", "SELECT count(*) FROM customers")[0][0] == 0
    seen = ui_b.page.evaluate("window.__seen")
    assert seen == [] and ui_b.page.get_attribute("#sync-card-customers", "data-state") == "idle", (
        f"desktop B's customers card followed runs that are not its own (A's, on another Redis database): {seen[:3]} (now {ui_b.describe()})")
