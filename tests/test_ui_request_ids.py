"""One request id from the page through the session, the queue and the events
(docs/UI-API.md, POST /api/sync): the page makes an id per click, the queue keeps it with
the run (and with every run the request joins or chains to), and every event of those runs
lists it in ``requests``, so that the page follows its own runs and no one else's.

Real throughout but the window: the UI server over HTTP, Redis with dramatiq's broker, a
``craftsync worker`` process on the UI's own database, the reference server over HTTP.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from craftsync.contract.records import data_fields, required_fields
from craftsync.contract.vocabulary import ALL_ENTITIES, Direction, Policy, Resolution, values
from craftsync.shell.records_api import editable
from craftsync.worker.queue import request_sync
from tests.support.api import API_KEY
from tests.support.process import RedisDB
from tests.support.device import Device
from tests.support.ui import SECRET, Page, Ui, json_of, serve
from tests.support.worker import EventLog, clean_env, start_worker
from tests.support.process import wait_until

pytestmark = pytest.mark.redis


def _request_id() -> str:
    return uuid.uuid4().hex


# -- the id reaches the queue ----------------------------------------------------------------


def test_a_sync_request_carries_the_pages_request_id_to_the_queue(ui: Ui, page: Page) -> None:
    # When the page asks for all entities under a request id of its own
    request_id = _request_id()
    body = json_of(page.post("/api/sync", json={"entities": [], "request_id": request_id}))
    # Then the answer names it, and the waiting run (which chains quotes and orders) holds it
    assert body["request_id"] == request_id and body["entities"] == list(ALL_ENTITIES)
    waiting = ui.queued_run("customers")
    assert waiting["run_id"] == body["run_id"] and json.loads(waiting["requests"]) == [request_id]


def test_a_request_that_joins_a_waiting_run_is_listed_with_the_runs_own(ui: Ui, page: Page) -> None:
    # Given a run of customers waiting in the queue for another requester (the CLI, say)
    foreign = _request_id()
    waiting = request_sync(ui.broker, ui.redis, ["customers"], direction="both", policy="remote", requests=[foreign])
    # When the page asks for customers too
    mine = _request_id()
    body = json_of(page.post("/api/sync", json={"entities": ["customers"], "request_id": mine}))
    # Then it joined that run, which now serves both requests
    assert body["run_id"] == waiting
    assert json.loads(ui.queued_run("customers")["requests"]) == [foreign, mine]


@pytest.mark.parametrize("request_id", [
    "0123456789ABCDEF0123456789ABCDEF",  # upper case
    "0123456789abcdef0123456789abcde",  # 31 digits
    "0123456789abcdef0123456789abcdef0",  # 33 digits
    str(uuid.UUID(int=1)),  # with dashes
    "0123456789abcdef0123456789abcdeg",
    12345,
    ["0123456789abcdef0123456789abcdef"],
])
def test_a_request_id_that_is_not_32_lowercase_hex_digits_is_refused(ui: Ui, page: Page, request_id: Any) -> None:
    response = page.post("/api/sync", json={"entities": ["customers"], "request_id": request_id})
    assert response.status_code == 400 and "request_id" in json_of(response)["message"]
    assert ui.nothing_queued()


def test_a_request_without_an_id_is_queued_for_no_one_in_particular(ui: Ui, page: Page) -> None:
    body = json_of(page.post("/api/sync", json={"entities": ["customers"]}))
    assert body["request_id"] is None
    assert json.loads(ui.queued_run("customers")["requests"]) == []


# -- the id comes back with the events ---------------------------------------------------------


class Stream:
    """The page's event stream (GET /api/events over HTTP), every event collected by a thread."""

    def __init__(self, base_url: str) -> None:
        self.events: list[dict[str, Any]] = []
        self._open = threading.Event()
        self._client = httpx.Client(base_url=base_url, headers={"X-CraftSync-Token": SECRET}, timeout=30.0)
        self._thread = threading.Thread(target=self._read, name="sse-reader", daemon=True)
        self._thread.start()
        assert self._open.wait(10), "the event stream did not open"

    def _read(self) -> None:
        try:
            with self._client.stream("GET", "/api/events") as stream:
                for line in stream.iter_lines():
                    self._open.set()
                    if line.startswith("data: "):
                        self.events.append(json.loads(line.removeprefix("data: ")))
        except httpx.HTTPError:
            return  # closed at the end of the test

    def of_run(self, run_id: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e.get("run_id") == run_id]

    def run_to_its_end(self, run_id: str, *, timeout: float) -> list[dict[str, Any]]:
        """The events of ``run_id`` relayed so far, once its end has been relayed too."""
        def ended() -> list[dict[str, Any]] | None:
            got = self.of_run(run_id)
            return got if got and got[-1]["type"] in ("completed", "failed") else None

        return list(wait_until(ended, timeout=timeout, what=f"run {run_id}'s end on the event stream"))

    def close(self) -> None:
        self._client.close()


@pytest.fixture
def served(ui: Ui) -> Iterator[str]:
    """The UI server on a real loopback port, as the session serves it: its base URL."""
    with serve(ui.app, send_bytes=1) as server:
        ui.ctx.port = server.effective_port
        yield f"http://127.0.0.1:{server.effective_port}"


@pytest.fixture
def worker(ui: Ui, redis_db: RedisDB, reference_url: str, tmp_path: Path) -> Iterator[None]:  # noqa: F811
    """One ``craftsync worker`` on the UI's database, consuming from the test's Redis database."""
    home = tmp_path / "worker-home"
    home.mkdir()
    env = clean_env(home, REDIS_URL=redis_db.url, CRAFTSYNC_DB=str(ui.database), REMOTE_API_URL=reference_url,
                    REMOTE_API_KEY=API_KEY)
    service = start_worker(env, log=tmp_path / "worker.log", cwd=home, processes=1, threads=2)
    try:
        yield
    finally:
        service.kill()


@pytest.mark.filterwarnings("ignore:send_bytes:DeprecationWarning")  # the session serves with send_bytes=1 too
def test_the_relayed_events_of_the_pages_runs_carry_its_id_and_a_foreign_runs_do_not(
    ui: Ui, served: str, worker: None, other: Device, redis_db: RedisDB,  # noqa: F811
) -> None:
    # Given customers on the server, the page following the event stream, and a run of
    # customers that another requester (as the CLI does) asked for on the same broker
    other.sql("INSERT INTO customers (name) VALUES ('Ann'), ('Bo'), ('Cy')")
    other.sync("customers")
    stream = Stream(served)
    log = EventLog(redis_db.client)
    try:
        foreign = _request_id()
        foreign_run = request_sync(ui.broker, ui.redis, ["customers"], direction="pull", policy="remote",
                                   requests=[foreign])
        foreign_end = log.wait_for(lambda e: e.get("run_id") == foreign_run and e["type"] == "completed",
                                   timeout=60, what="the foreign run to end")
        assert foreign_end["pulled"] == 3

        # When the page asks for all entities under its own request id
        mine = _request_id()
        with httpx.Client(base_url=served, headers={"X-CraftSync-Token": SECRET}) as http:
            answer = http.post("/api/sync", json={"entities": [], "request_id": mine})
        assert answer.status_code == 202, answer.text
        ended = {e: log.wait_for(lambda ev, e=e: ev.get("entity") == e and ev["type"] == "completed"
                                 and mine in ev.get("requests", []), timeout=60, what=f"the page's {e} run to end")
                 for e in ALL_ENTITIES}

        # Then the stream relayed each run of the page's chain, every event listing the page's
        # id, the customers run being the one the POST answered with
        assert ended["customers"]["run_id"] == answer.json()["run_id"]
        for entity, end in ended.items():
            relayed = stream.run_to_its_end(end["run_id"], timeout=10)
            assert relayed[0]["type"] == "started" and relayed[-1]["type"] == "completed"
            assert all(e["requests"] == [mine] and e["entity"] == entity for e in relayed), relayed
        # and the foreign run's events, relayed too, name only the foreign request
        theirs = stream.run_to_its_end(foreign_run, timeout=10)
        assert all(e["requests"] == [foreign] for e in theirs), theirs
    finally:
        log.close()
        stream.close()


# -- the vocabulary the page builds its lists from ---------------------------------------------


def test_the_vocabulary_serves_the_contracts_lists_in_order(page: Page) -> None:
    vocabulary = json_of(page.get("/api/vocabulary"))
    assert [e["name"] for e in vocabulary["entities"]] == list(ALL_ENTITIES)
    assert vocabulary["all"] == list(ALL_ENTITIES)
    assert vocabulary["directions"] == list(values(Direction))
    assert vocabulary["policies"] == list(values(Policy))
    assert vocabulary["resolutions"] == list(values(Resolution))
    assert vocabulary["defaults"] == {"direction": "both", "policy": "remote"}
    for served_entity in vocabulary["entities"]:
        name = served_entity["name"]
        assert served_entity["label"] == name.capitalize()
        assert served_entity["fields"] == editable(name)
        assert set(served_entity["fields"]) < set(data_fields(name))
        assert served_entity["required"] == list(required_fields(name))
    assert vocabulary["entities"][0]["required"] == ["name"]
    assert vocabulary["entities"][2]["references"] == {"customer_id": "customers", "quote_id": "quotes"}


def test_the_vocabulary_needs_the_launch_secret(ui: Ui) -> None:
    assert ui.page().get("/api/vocabulary").status_code == 403
