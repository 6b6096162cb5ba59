"""GET /api/status (docs/UI-API.md): counts, rejected records, and the syncing, error and
offline states.

Everything is real except the window: the local SQLite store, the preferences and key file,
the reference server over HTTP as the remote (and in-process for the Device helpers that
make runs and conflicts in the UI's database), Redis with dramatiq's broker for the queue
and the event channel, and the connection monitor (the fixtures of tests/support/fixtures.py).
"""

from __future__ import annotations

from pathlib import Path

from craftsync.worker.queue import entity_lock
from craftsync.worker.remote import RemoteClient, RemoteSettings
from tests.support.api import API_KEY
from tests.support.device import Device
from tests.support.ui import USER_KEY, Page, Ui, free_port, json_of, make_ui, manual_conflict
from tests.support.worker import redis_server


# -- GET /api/status -------------------------------------------------------------------------


def test_status_shape_when_nothing_happened_yet(ui: Ui, page: Page) -> None:
    status = json_of(page.get("/api/status"))
    assert set(status) == {"state", "connection", "service", "broker", "syncing", "last_sync", "entities",
                           "open_conflicts", "rejected"}
    assert status["state"] == "online" and status["broker"] == {"state": "online"}
    connection = status["connection"]
    assert connection["state"] == "online" and connection["detail"] is None
    assert isinstance(connection["latency_ms"], int) and connection["checked_at"].endswith("Z")
    assert status["syncing"] == [] and status["last_sync"] is None
    assert status["open_conflicts"] == 0 and status["rejected"] == []
    assert set(status["entities"]) == {"customers", "quotes", "orders"}
    for counts in status["entities"].values():
        assert counts == {"pending": 0, "conflict": 0, "rejected": 0, "synced": 0, "last_run": None}


def test_status_counts_pending_host_app_changes_and_open_conflicts(ui: Ui, page: Page, here: Device,
                                                                   other: Device) -> None:
    # Given a manual conflict in the UI's database
    manual_conflict(here, other)
    # And two customers and one order the host app inserted with plain SQL since
    ui.host_sql("INSERT INTO customers (name) VALUES ('New 1')")
    ui.host_sql("INSERT INTO customers (name) VALUES ('New 2')")
    ui.host_sql("INSERT INTO orders (status) VALUES ('new')")
    # When the page asks for the status
    status = json_of(page.get("/api/status"))
    # Then it counts them
    customers = status["entities"]["customers"]
    assert (customers["pending"], customers["conflict"], customers["synced"]) == (2, 1, 0)
    assert status["entities"]["orders"]["pending"] == 1
    assert status["entities"]["quotes"]["pending"] == 0
    assert status["open_conflicts"] == 1
    assert customers["last_run"]["status"] == "conflicts" and customers["last_run"]["policy"] == "manual"
    assert status["last_sync"]["entity"] == "customers" and status["last_sync"]["status"] == "conflicts"
    assert status["state"] == "online"


def test_status_lists_rejected_records_with_their_reason(ui: Ui, page: Page, here: Device) -> None:
    # Given a record the server rejects (an email it does not accept)
    ui.host_sql("INSERT INTO customers (name, email) VALUES ('Bad', 'not an email')")
    here.sync("customers")
    status = json_of(page.get("/api/status"))
    ((rejected),) = status["rejected"]
    assert rejected["entity"] == "customers" and rejected["reason"]
    assert status["entities"]["customers"]["rejected"] == 1


def test_status_says_syncing_while_an_entity_lock_is_held(ui: Ui, page: Page) -> None:
    with entity_lock(ui.redis, "quotes"):
        status = json_of(page.get("/api/status"))
    assert (status["state"], status["syncing"]) == ("syncing", ["quotes"])
    assert json_of(page.get("/api/status"))["syncing"] == []


def test_status_says_error_after_a_failed_run_while_online(ui: Ui, page: Page, here: Device) -> None:
    # Given a run that failed (its remote was unreachable)
    here.engine.remote = RemoteClient(RemoteSettings(base_url=f"http://127.0.0.1:{free_port()}/api",
                                                     api_key=API_KEY, max_attempts=1))
    assert here.sync("customers").status == "failed"
    # Then, with the connection back, the status is "error"
    status = json_of(page.get("/api/status"))
    assert status["state"] == "error"
    assert status["last_sync"]["status"] == "failed"


def test_status_says_offline_when_the_remote_cannot_be_reached(ui: Ui, page: Page) -> None:
    closed = f"http://127.0.0.1:{free_port()}/api"
    assert page.put("/api/settings", json={"remote_url": closed, "api_key": USER_KEY}).status_code == 200
    # (the session has its monitor check at once after a settings change; the page polls)
    ui.connection_checked("offline")
    status = json_of(page.get("/api/status"))
    assert status["state"] == "offline"
    assert status["connection"]["state"] == "offline" and status["connection"]["detail"]


def test_status_survives_an_unreachable_broker(tmp_path: Path, reference_url: str) -> None:
    # Given a session started on a broker that then went away
    with redis_server(tmp_path) as (broker, process):
        ui = make_ui(tmp_path, broker.url, reference_url, worker=False)
        process.kill()
    try:
        status = json_of(ui.logged_in().get("/api/status"))
        assert status["syncing"] == [] and status["state"] == "online"
        assert status["broker"]["state"] == "unreachable" and "not answering" in status["broker"]["detail"]
    finally:
        ui.close()
