"""POST /api/sync (docs/UI-API.md): what is queued, in which order, with which direction and
policy; joining a waiting run; refusals.

Everything is real except the window: the local SQLite store, the preferences and key file,
the reference server over HTTP as the remote (and in-process for the Device helpers that
make runs and conflicts in the UI's database), Redis with dramatiq's broker for the queue
and the event channel, and the connection monitor (the fixtures of tests/support/fixtures.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.ui import Page, Ui, json_of, make_ui
from tests.support.worker import redis_server


# -- POST /api/sync --------------------------------------------------------------------------


def test_sync_all_queues_customers_first_with_the_default_direction(ui: Ui, page: Page) -> None:
    response = page.post("/api/sync", json={"entities": []})
    assert response.status_code == 202
    body = json_of(response)
    assert body["entities"] == ["customers", "quotes", "orders"]
    assert len(body["run_id"]) == 32
    # Then the run is on the customers queue, and the chain goes on with quotes and orders
    (message,) = ui.queued("customers")
    assert message["actor_name"] == "sync_customers"
    assert message["kwargs"] == {"direction": "both", "policy": "remote", "run_id": body["run_id"]}
    assert ui.queued_run("customers") == {"run_id": body["run_id"], "then": '["quotes", "orders"]', "requests": "[]"}
    assert ui.queued("quotes") == [] and ui.queued("orders") == []


def test_sync_follows_the_saved_preferences_and_the_request(ui: Ui, page: Page) -> None:
    page.put("/api/settings", json={"default_direction": "pull", "conflict_policy": "manual"})
    body = json_of(page.post("/api/sync", json={"entities": ["orders", "quotes"]}))
    assert body["entities"] == ["quotes", "orders"]
    (message,) = ui.queued("quotes")
    assert (message["kwargs"]["direction"], message["kwargs"]["policy"]) == ("pull", "manual")
    body = json_of(page.post("/api/sync", json={"entities": ["customers"], "direction": "push", "policy": "local"}))
    (message,) = ui.queued("customers")
    assert message["kwargs"] == {"direction": "push", "policy": "local", "run_id": body["run_id"]}


def test_a_second_request_joins_the_waiting_run(ui: Ui, page: Page) -> None:
    first = json_of(page.post("/api/sync", json={"entities": ["customers"]}))
    second = json_of(page.post("/api/sync", json={"entities": ["customers"]}))
    assert first["run_id"] == second["run_id"]
    # (each request queues a message for the one run: the first a worker takes does it)
    assert {m["kwargs"]["run_id"] for m in ui.queued("customers")} == {first["run_id"]}
    assert ui.queued_run("customers")["run_id"] == first["run_id"]


@pytest.mark.parametrize(
    "body",
    [{"entities": ["invoices"]}, {"entities": "customers"}, {"entities": ["customers", 3]},
     {"direction": "sideways"}, {"direction": 1}, {"policy": "newest"}, [], "customers"],
)
def test_sync_rejects_bad_requests(ui: Ui, page: Page, body: Any) -> None:
    response = page.post("/api/sync", json=body)
    assert response.status_code == 400
    assert set(json_of(response)) == {"error", "message"} and json_of(response)["message"]
    assert ui.nothing_queued()


def test_sync_rejects_a_body_that_is_not_json(page: Page) -> None:
    response = page.post("/api/sync", data="entities=customers", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400


def test_sync_answers_503_when_the_broker_is_unreachable(tmp_path: Path, reference_url: str) -> None:
    # Given a session started on a broker that then went away
    with redis_server(tmp_path) as (broker, process):
        ui = make_ui(tmp_path, broker.url, reference_url, worker=False)
        process.kill()
    try:
        response = ui.logged_in().post("/api/sync", json={})
        assert response.status_code == 503
        assert json_of(response)["error"] == "broker_unavailable"
    finally:
        ui.close()
