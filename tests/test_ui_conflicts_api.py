"""GET /api/conflicts and POST /api/conflicts/<id>/resolve (docs/UI-API.md): a manual
conflict side by side, and resolving it.

Everything is real except the window: the local SQLite store, the preferences and key file,
the reference server over HTTP as the remote (and in-process for the Device helpers that
make runs and conflicts in the UI's database), Redis with dramatiq's broker for the queue
and the event channel, and the connection monitor (the fixtures of tests/support/fixtures.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from tests.support.device import Device
from tests.support.sync import server_live
from tests.support.ui import Page, Ui, json_of, manual_conflict


# -- GET /api/conflicts and POST /api/conflicts/<id>/resolve ---------------------------------


def test_conflicts_lists_a_manual_conflict_side_by_side(ui: Ui, page: Page, here: Device, other: Device) -> None:
    record_id = manual_conflict(here, other)
    (conflict,) = json_of(page.get("/api/conflicts"))["conflicts"]
    assert set(conflict) == {"id", "entity", "record_id", "fields", "local", "remote", "base", "remote_version",
                             "created_at"}
    assert (conflict["entity"], conflict["record_id"], conflict["fields"]) == ("customers", record_id, ["name"])
    assert conflict["local"]["name"] == "From here" and conflict["local"]["phone"] == "42"
    assert conflict["remote"]["name"] == "From other"
    assert conflict["base"]["name"] == "Ann"
    assert isinstance(conflict["remote_version"], int)


@pytest.mark.parametrize(
    ("use", "data", "name", "phone"),
    [("local", None, "From here", "42"), ("remote", None, "From other", None),
     ("merged", {"name": "Chosen", "phone": "42"}, "Chosen", "42")],
)
def test_resolving_a_conflict_stores_the_choice_and_queues_a_push(ui: Ui, page: Page, here: Device, other: Device,
                                                                  reference_app: Flask, use: str, data: Any, name: str,
                                                                  phone: Any) -> None:
    record_id = manual_conflict(here, other)
    (conflict,) = json_of(page.get("/api/conflicts"))["conflicts"]
    assert ui.queued("customers") == []
    # When the user settles it
    body = {"use": use, **({"data": data} if data is not None else {})}
    response = page.post(f"/api/conflicts/{conflict['id']}/resolve", json=body)
    # Then the chosen record is answered and stored locally, and the conflict is closed
    assert response.status_code == 200, response.get_json()
    record = json_of(response)["record"]
    assert (record["id"], record["name"], record["phone"]) == (record_id, name, phone)
    stored = ui.host_sql("SELECT name, phone FROM customers WHERE id = ?", record_id)[0]
    assert (stored["name"], stored["phone"]) == (name, phone)
    assert json_of(page.get("/api/conflicts"))["conflicts"] == []
    assert json_of(page.get("/api/status"))["open_conflicts"] == 0
    # And a push of customers is queued
    (message,) = ui.queued("customers")
    assert message["kwargs"]["direction"] == "push"
    assert ui.queued_run("customers")["run_id"] == message["kwargs"]["run_id"]
    assert message["kwargs"]["policy"] == "remote"
    assert ui.queued_run("customers")["then"] == "[]"
    assert all(ui.queued(e) == [] and ui.queued_run(e) == {} for e in ("quotes", "orders"))
    # And that push brings the choice to the server
    here.sync("customers", "push")
    assert (server_live(reference_app, "customers")[record_id]["name"], server_live(reference_app, "customers")[record_id]["phone"]) \
        == (name, phone)


def test_resolving_with_bad_input(ui: Ui, page: Page, here: Device, other: Device) -> None:
    manual_conflict(here, other)
    (conflict,) = json_of(page.get("/api/conflicts"))["conflicts"]
    path = f"/api/conflicts/{conflict['id']}/resolve"
    for body in ({"use": "newest"}, {}, {"use": "merged", "data": ["name"]}, {"use": "merged", "data": {"colour": "x"}},
                 {"use": "merged", "data": {"email": "not an email"}}, ["local"]):
        response = page.post(path, json=body)
        assert response.status_code == 400, (body, response.get_json())
        assert json_of(response)["message"]
    # Unknown ids
    assert page.post("/api/conflicts/999999/resolve", json={"use": "local"}).status_code == 404
    assert page.post("/api/conflicts/abc/resolve", json={"use": "local"}).status_code == 404
    # Nothing was settled nor queued
    assert len(json_of(page.get("/api/conflicts"))["conflicts"]) == 1
    assert ui.nothing_queued()
    # A settled conflict is no longer open
    assert page.post(path, json={"use": "remote"}).status_code == 200
    assert page.post(path, json={"use": "remote"}).status_code == 404
