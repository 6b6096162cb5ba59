"""End to end, in Chromium: the page's sync cards follow the runs of its own requests, and
only those. ``craftsync run --browser`` with its real workers on a real Redis, the reference
server as a subprocess, and ``craftsync sync`` (the CLI) as another requester on the same
broker, the same workers and the same local database.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e import (
    DesktopRun,
    RemoteServer,
    UiPage,
    run_env,
    wait_run,
    write_preferences,
)
from tests.support.worker import CRAFTSYNC, RedisDB

pytestmark = [pytest.mark.redis, pytest.mark.slow]

#: Seconds a sync of a few dozen records gets, on a machine shared with other test runs.
SYNC_TIMEOUT_S = 90


@pytest.fixture
def run(tmp_path: Path, redis_db: RedisDB, remote_server: RemoteServer) -> Iterator[DesktopRun]:  # noqa: F811
    """A desktop on the test's Redis database that syncs only when asked."""
    home = tmp_path / "home"
    write_preferences(home, sync_on_launch=False, auto_sync=False)
    env = run_env(home, REDIS_URL=redis_db.url, REMOTE_API_URL=remote_server.url, REMOTE_API_KEY=remote_server.key)
    desktop = DesktopRun(home, env, log=tmp_path / "run.log").start()
    try:
        yield desktop
    finally:
        desktop.stop()


@pytest.fixture
def ui(chromium: Any, run: DesktopRun) -> Iterator[UiPage]:
    page = UiPage(chromium, run).open()
    try:
        yield page
    finally:
        page.close()


def cli_sync(run: DesktopRun, *args: str) -> subprocess.CompletedProcess[str]:
    """``craftsync sync ARGS --wait`` beside the running desktop, as its user would type it."""
    done = subprocess.run([*CRAFTSYNC, "sync", *args, "--wait"], env=run.env, cwd=run.home, capture_output=True,
                          text=True, timeout=SYNC_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def ended(state: dict[str, Any]) -> bool:
    return state["state"] in ("completed", "conflicts", "failed")


def test_the_customers_card_follows_its_own_run_and_not_the_clis_on_the_same_broker(
    ui: UiPage, run: DesktopRun, remote_server: RemoteServer,
) -> None:
    # Given 50 customers on the server, and the page's customers card after its own sync
    remote_server.seed_customers(50)
    ui.wait_for(lambda: ui.state() == "online", timeout=30, what="the desktop to be online")
    run_id = ui.sync_customers("both")
    mine = ui.wait_card_showed("customers", ended, timeout=SYNC_TIMEOUT_S, what="the end of its own run")
    assert mine["state"] == "completed" and mine["text"] == "Both ways done · 0 pushed · 50 pulled", mine
    assert wait_run(run, run_id, timeout=SYNC_TIMEOUT_S)["pulled"] == 50
    shown = ui.card_log("customers")

    # When 20 more customers arrive and the CLI pulls them, on the same broker, with the same
    # workers and the same local database: its run's events reach the page's event stream
    remote_server.seed_customers(20, prefix="Later")
    cli_sync(run, "customers", "--direction", "pull")
    ui.wait_for(lambda: "70 synced" in ui.text("#sync-meta-customers"), timeout=30,
                what="the card's counts to include the CLI's customers")
    time.sleep(2)  # ample time for the CLI run's last events to reach the page, if they were to change it
    ui.screenshot("request-ids-own-run.png")

    # Then the card still shows the end of the page's own run: the CLI's run never changed it
    assert ui.card_log("customers") == shown, (
        f"the customers card followed the CLI's run: {ui.card_log('customers')[len(shown):][:4]}")
    assert ui.page.get_attribute("#sync-card-customers", "data-state") == "completed"
    assert ui.text("#progress-text-customers") == "Both ways done · 0 pushed · 50 pulled"


def test_sync_all_follows_its_chain_while_the_cli_syncs_customers_on_the_same_broker(
    ui: UiPage, run: DesktopRun, remote_server: RemoteServer,
) -> None:
    # Given 30 customers on the server and the page online
    remote_server.seed_customers(30)
    ui.wait_for(lambda: ui.state() == "online", timeout=30, what="the desktop to be online")
    # and a pull of customers by the CLI, done before the page asks for anything
    cli_sync(run, "customers", "--direction", "pull")
    assert ui.page.get_attribute("#sync-card-customers", "data-state") == "idle"

    # When the page asks for all entities
    for entity in ("all", "customers", "quotes", "orders"):
        ui.watch_card(entity)
        ui.page.evaluate("(e) => { window.__cards[e].length = 0; }", entity)
    ui.page.click("#sync-all")

    # Then the "All" card goes through its three steps to the end, and each entity's card
    # shows its own run of the chain (nothing left to pull: the CLI pulled it all before)
    final = ui.wait_card_showed("all", ended, timeout=SYNC_TIMEOUT_S, what="the end of the chain")
    assert final["state"] == "completed" and final["text"] == "Both ways done · 0 pushed · 0 pulled", final
    steps = [s["text"] for s in ui.card_log("all") if s["state"] == "running"]
    assert any(t.startswith("1 of 3") for t in steps) and any(t.startswith("3 of 3") for t in steps), steps
    for entity in ("customers", "quotes", "orders"):
        end = ui.wait_card_showed(entity, ended, timeout=10, what=f"the end of the chain's {entity} run")
        assert (end["state"], end["text"]) == ("completed", "Both ways done · 0 pushed · 0 pulled"), (entity, end)
    ui.screenshot("request-ids-sync-all.png")
    assert ui.errors == [], ui.errors


def test_a_run_that_ends_before_the_pages_request_is_answered_still_shows_its_end(
    ui: UiPage, run: DesktopRun, remote_server: RemoteServer,
) -> None:
    # Given 10 customers on the server, and an answer to "Sync customers" that reaches the
    # page only once the run it queued has ended (its events came first)
    remote_server.seed_customers(10)
    ui.wait_for(lambda: ui.state() == "online", timeout=30, what="the desktop to be online")

    def answer_late(route: Any) -> None:
        response = route.fetch()
        wait_run(run, response.json()["run_id"], timeout=SYNC_TIMEOUT_S)
        time.sleep(1)  # and its last events have reached the page
        route.fulfill(response=response)

    ui.page.route("**/api/sync", answer_late)
    # When the user presses "Sync customers"
    ui.sync_customers("both")
    # Then the card shows the run's end, and keeps showing it after the late answer
    end = ui.wait_card_showed("customers", ended, timeout=SYNC_TIMEOUT_S, what="the end of its run")
    assert (end["state"], end["text"]) == ("completed", "Both ways done · 0 pushed · 10 pulled"), end
    ui.page.wait_for_timeout(1000)
    assert ui.page.get_attribute("#sync-card-customers", "data-state") == "completed", ui.card_log("customers")
    assert ui.text("#progress-text-customers") == "Both ways done · 0 pushed · 10 pulled"


def test_records_synced_while_the_event_stream_was_down_are_listed_once_it_is_back(
    chromium: Any, run: DesktopRun, remote_server: RemoteServer,
) -> None:
    # Given 10 customers on the server, and a page whose event stream cannot connect yet
    remote_server.seed_customers(10, prefix="Reached")
    stream_down = True

    def events(route: Any) -> None:
        if stream_down:
            route.abort()  # the browser's EventSource tries again by itself
        else:
            route.continue_()

    ui = UiPage(chromium, run)
    try:
        ui.page.route("**/api/events", events)
        ui.page.goto(run.launch_url, wait_until="load")
        ui.page.wait_for_selector("#records-customers")
        # When a sync pulls the customers meanwhile (its events go unseen), and the stream comes back
        cli_sync(run, "customers", "--direction", "pull")
        listed = "#records-customers tbody tr[data-id]"
        assert ui.page.locator(listed).count() == 0, "the list was read before the sync"
        stream_down = False
        # Then the page reads its lists again and shows the customers, without a reload
        ui.wait_for(lambda: ui.page.locator(listed).count() == 10, timeout=30, what="the pulled customers to be listed")
        assert "Reached 00000" in ui.text("#records-customers")
    finally:
        ui.close()
