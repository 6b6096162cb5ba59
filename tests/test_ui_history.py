"""GET /api/history (docs/UI-API.md): runs newest first, with their totals.

Everything is real except the window: the local SQLite store, the preferences and key file,
the reference server over HTTP as the remote (and in-process for the Device helpers that
make runs and conflicts in the UI's database), Redis with dramatiq's broker for the queue
and the event channel, and the connection monitor (the fixtures of tests/support/fixtures.py).
"""

from __future__ import annotations

import time

from craftsync.worker.remote import RemoteClient, RemoteSettings
from tests.support.api import API_KEY
from tests.support.device import Device
from tests.support.ui import Page, Ui, free_port, json_of


# -- GET /api/history ------------------------------------------------------------------------


def test_history_lists_runs_newest_first_with_totals(ui: Ui, page: Page, here: Device, other: Device) -> None:
    assert json_of(page.get("/api/history")) == {
        "runs": [], "totals": {"runs": 0, "completed": 0, "failed": 0, "conflicts": 0, "pushed": 0, "pulled": 0}}
    # Given a push of two customers, then a pull of one made elsewhere, then a failed run
    ui.host_sql("INSERT INTO customers (name) VALUES ('One')")
    ui.host_sql("INSERT INTO customers (name) VALUES ('Two')")
    first = here.sync("customers")
    other.sql("INSERT INTO customers (name) VALUES ('Three')")
    other.sync("customers")
    time.sleep(0.01)
    second = here.sync("customers", "pull")
    here.engine.remote = RemoteClient(RemoteSettings(base_url=f"http://127.0.0.1:{free_port()}/api",
                                                     api_key=API_KEY, max_attempts=1))
    time.sleep(0.01)
    third = here.sync("quotes")
    assert (first.pushed, second.pulled, third.status) == (2, 1, "failed")
    # Then the history has them newest first, with their counts
    history = json_of(page.get("/api/history"))
    runs = history["runs"]
    assert [r["run_id"] for r in runs] == [third.run_id, second.run_id, first.run_id]
    assert set(runs[0]) >= {"run_id", "entity", "direction", "policy", "status", "started_at", "finished_at",
                            "pushed", "pulled", "conflicts", "rejected", "error"}
    assert (runs[2]["entity"], runs[2]["direction"], runs[2]["status"], runs[2]["pushed"]) == \
        ("customers", "both", "completed", 2)
    assert (runs[1]["direction"], runs[1]["pulled"]) == ("pull", 1)
    assert runs[0]["status"] == "failed" and runs[0]["error"]
    assert history["totals"] == {"runs": 3, "completed": 2, "failed": 1, "conflicts": 0, "pushed": 2, "pulled": 1}
    # limit
    assert [r["run_id"] for r in json_of(page.get("/api/history?limit=1"))["runs"]] == [third.run_id]
    for bad in ("0", "abc", "-1", "1001"):
        assert page.get(f"/api/history?limit={bad}").status_code == 400, bad
