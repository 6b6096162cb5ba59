"""The UI server's local API (docs/UI-API.md) and its guards (spec §8, §9), endpoint by endpoint.

Everything is real except the window: the local SQLite store, the preferences and key file,
the reference server over HTTP as the remote (and in-process for the Device helpers that
make runs and conflicts in the UI's database), Redis with dramatiq's broker for the queue
and the event channel, and the connection monitor.
"""

from __future__ import annotations

import json
import os
import queue
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import keyring
import pytest
import redis
from flask import Flask
from keyring.backends import fail

from craftsync.shell import ui_server
from craftsync.shell.preferences import PreferenceStore
from craftsync.shell.ui_server import CSP
from tests.support.api import API_KEY
from tests.support.sync import Device, central_app, server_live
from tests.support.ui import (
    BASE_URL,
    COOKIE,
    ORIGIN,
    PORT,
    SECRET,
    WEB_FILES,
    Page,
    Ui,
    free_port,
    make_ui,
    serve,
    write_web,
)
from tests.support.worker import RedisDB, redis_db  # noqa: F401  (a fixture: a Redis database of our own)
from craftsync.worker.events import channel
from craftsync.worker.queue import entity_lock
from craftsync.worker.remote import RemoteClient, RemoteSettings

CUSTOMER_FIELDS = ["name", "company", "email", "phone", "address", "city", "state", "zip", "country", "notes"]
USER_KEY = "user-secret-key-XYZW7531"


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def central(tmp_path: Path) -> Flask:
    return central_app(tmp_path)


@pytest.fixture
def central_url(central: Flask) -> Iterator[str]:
    with serve(central) as server:
        yield f"http://127.0.0.1:{server.effective_port}/api"


@pytest.fixture(autouse=True)
def web_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small web/ of known files, so that static answers do not depend on the page's progress."""
    directory = write_web(tmp_path / "web")
    monkeypatch.setattr(ui_server, "WEB_DIR", directory)
    return directory


@pytest.fixture
def ui(tmp_path: Path, redis_db: RedisDB, central_url: str) -> Iterator[Ui]:  # noqa: F811
    one = make_ui(tmp_path, redis_db.url, central_url)
    yield one
    one.close()


@pytest.fixture
def page(ui: Ui) -> Page:
    """The window's page: opened with the launch token, holding the cookie."""
    return ui.logged_in()


@pytest.fixture
def here(ui: Ui, central: Flask) -> Iterator[Device]:
    """A sync engine on the UI's own database (as a worker process would run it)."""
    device = Device(ui.database, central)
    yield device
    device.close()


@pytest.fixture
def other(tmp_path: Path, central: Flask) -> Iterator[Device]:
    """Another desktop syncing with the same central server."""
    device = Device(tmp_path / "other.db", central)
    yield device
    device.close()


@pytest.fixture
def no_keyring_left_behind() -> Iterator[None]:
    yield
    if not isinstance(keyring.get_keyring(), fail.Keyring):
        try:
            keyring.delete_password("craftsync", "remote-api-key")
        except keyring.errors.KeyringError:
            pass


# -- helpers ---------------------------------------------------------------------------------


def _json(response: Any) -> Any:
    assert response.is_json, (response.status_code, response.data[:200])
    return response.get_json()


def _forbidden(response: Any) -> None:
    assert response.status_code == 403, (response.status_code, response.data[:200])
    assert _json(response)["error"] == "forbidden"
    assert response.headers["Content-Security-Policy"] == CSP


def _manual_conflict(here: Device, other: Device) -> str:
    """A customer both desktops renamed; the UI's desktop synced under the manual policy."""
    other.sql("INSERT INTO customers (name, email) VALUES ('Ann', 'ann@example.com')")
    other.sync("customers")
    here.sync("customers")
    (record_id,) = here.live("customers")
    other.sql("UPDATE customers SET name = 'From other' WHERE id = ?", record_id)
    here.sql("UPDATE customers SET name = 'From here', phone = '42' WHERE id = ?", record_id)
    other.sync("customers")
    assert here.sync("customers", policy="manual").status == "conflicts"
    return record_id


def _next_chunk(chunks: Iterator[Any], timeout: float = 5.0) -> str:
    """The next piece of a streaming body, or a test failure after ``timeout`` seconds."""
    box: queue.Queue[Any] = queue.Queue()
    threading.Thread(target=lambda: box.put(next(chunks)), daemon=True).start()
    try:
        chunk = box.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"nothing arrived on the stream within {timeout} s")
    return chunk.decode() if isinstance(chunk, bytes) else chunk


def _next_data(chunks: Iterator[Any], run_id: str, timeout: float = 5.0) -> str:
    """The next ``data:`` message of run ``run_id`` on an event stream, skipping comment lines.

    Redis pub/sub channels are server-wide, not per database: other craftsync runs on the
    same Redis server (other people's tests, benchmarks) publish on the same channel.
    """
    deadline = time.monotonic() + timeout
    while True:
        chunk = _next_chunk(chunks, max(deadline - time.monotonic(), 0.01))
        if chunk.startswith("data: ") and json.loads(chunk.removeprefix("data: "))["run_id"] == run_id:
            return chunk


def _publish_soon(url: str, *events: dict[str, Any]) -> threading.Thread:
    """Publish ``events`` on the channel from another thread, a moment from now (join it)."""

    def publish() -> None:
        time.sleep(0.1)
        client = redis.Redis.from_url(url)
        try:
            for event in events:
                client.publish(channel(client), json.dumps(event))
        finally:
            client.close()

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    return thread


def _event(**fields: Any) -> dict[str, Any]:
    event = {"type": "progress", "run_id": uuid.uuid4().hex, "entity": "customers", "direction": "both", "done": 3,
             "total": 10, "pushed": 1, "pulled": 2, "conflicts": 0, "rate": 12.5, "eta_s": 0.6,
             "error": None, "status": "running", "ts": "2026-01-02T03:04:05.000Z"}
    event.update(fields)
    return event


# -- §9 security: the secret ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/static/js/app.js", "/api/status", "/api/settings", "/api/records/customers"])
def test_requests_without_the_secret_are_refused(ui: Ui, path: str) -> None:
    # Given no cookie and no header
    response = ui.page().get(path)
    # Then the answer is 403 with a JSON error and the CSP
    _forbidden(response)


def test_a_wrong_secret_is_refused_in_cookie_header_and_launch_token(ui: Ui) -> None:
    # A wrong cookie
    page = ui.page()
    page.client.set_cookie(COOKIE, "not-the-secret", domain="127.0.0.1")
    _forbidden(page.get("/api/status"))
    # A wrong header
    _forbidden(ui.page(headers={"X-CraftSync-Token": "not-the-secret"}).get("/api/status"))
    # The right secret under another port's cookie name
    page = ui.page()
    page.client.set_cookie(f"craftsync_{PORT + 1}", SECRET, domain="127.0.0.1")
    _forbidden(page.get("/api/status"))
    # A wrong launch token: refused, and no cookie is handed out
    page = ui.page()
    response = page.get("/?token=not-the-secret")
    _forbidden(response)
    assert "Set-Cookie" not in response.headers
    _forbidden(page.get("/api/status"))
    # A prefix of the secret is not the secret
    _forbidden(ui.page(headers={"X-CraftSync-Token": SECRET[:-1]}).get("/api/status"))


def test_the_launch_token_sets_a_strict_httponly_cookie_and_redirects_home(ui: Ui) -> None:
    # When the window opens /?token=<secret>
    page = ui.page()
    response = page.login()
    # Then it is redirected to / with the cookie craftsync_<port>
    assert response.status_code in (302, 303)
    assert response.headers["Location"] in ("/", f"{BASE_URL}/")
    assert response.headers["Content-Security-Policy"] == CSP
    (cookie,) = response.headers.getlist("Set-Cookie")
    attributes = [part.strip() for part in cookie.split(";")]
    assert attributes[0] == f"{COOKIE}={SECRET}"
    assert "HttpOnly" in attributes
    assert "SameSite=Strict" in attributes
    assert "Path=/" in attributes
    # And the page, its files and the API now answer with that cookie alone
    home = page.get("/")
    assert home.status_code == 200 and home.data.decode() == WEB_FILES["index.html"]
    script = page.get("/static/js/app.js")
    assert script.status_code == 200 and script.data.decode() == WEB_FILES["js/app.js"]
    assert script.headers["Content-Security-Policy"] == CSP
    assert page.get("/static/css/app.css").status_code == 200
    assert page.get("/api/status").status_code == 200


def test_the_header_is_an_alternative_to_the_cookie(ui: Ui) -> None:
    page = ui.page(headers={"X-CraftSync-Token": SECRET})
    assert page.get("/api/settings").status_code == 200
    assert page.get("/static/js/app.js").status_code == 200


def test_static_files_outside_web_are_not_served(page: Page, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("secret")
    for path in ("/static/../outside.txt", "/static/%2e%2e/outside.txt", "/static/..%2foutside.txt"):
        response = page.get(path)
        assert response.status_code == 404, path
        assert b"secret" not in response.data
        assert response.headers["Content-Security-Policy"] == CSP


# -- §9 security: Host and Origin ------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    ["http://evil.example:5555", f"http://127.0.0.1:{PORT + 1}", "http://127.0.0.1", "http://localhost:80",
     f"http://127.0.0.2:{PORT}", f"http://[::1]:{PORT}"],
)
def test_a_foreign_host_is_refused_even_with_the_secret(ui: Ui, base_url: str) -> None:
    # DNS rebinding: the browser sends the secret cookie... to a name that resolves to us
    page = ui.page(base_url=base_url, headers={"X-CraftSync-Token": SECRET})
    _forbidden(page.get("/api/status"))
    # and the launch token does not hand out a cookie there either
    response = page.get(f"/?token={SECRET}")
    _forbidden(response)
    assert "Set-Cookie" not in response.headers


def test_localhost_with_the_port_is_accepted(ui: Ui) -> None:
    page = ui.page(base_url=f"http://localhost:{PORT}", headers={"X-CraftSync-Token": SECRET})
    assert page.get("/api/status").status_code == 200
    assert page.post("/api/records/customers", json={"name": "Via localhost"},
                     headers={"Origin": f"http://localhost:{PORT}"}).status_code == 201


@pytest.mark.parametrize("origin", ["http://evil.example", f"http://127.0.0.1:{PORT + 1}", "null",
                                    f"https://127.0.0.1:{PORT}", f"http://evil.example:{PORT}"])
def test_state_changing_requests_from_a_foreign_origin_are_refused(ui: Ui, page: Page, origin: str) -> None:
    # Given a customer and the page's cookie
    created = _json(page.post("/api/records/customers", json={"name": "Kept"}, headers={"Origin": ORIGIN}))
    record_id = created["record"]["id"]
    foreign = {"Origin": origin}
    # When another origin posts, puts and deletes with that cookie
    _forbidden(page.post("/api/records/customers", json={"name": "Injected"}, headers=foreign))
    _forbidden(page.put(f"/api/records/customers/{record_id}", json={"name": "Changed"}, headers=foreign))
    _forbidden(page.delete(f"/api/records/customers/{record_id}", headers=foreign))
    _forbidden(page.put("/api/settings", json={"auto_sync": False}, headers=foreign))
    _forbidden(page.post("/api/sync", json={}, headers=foreign))
    # Then nothing was written and nothing queued
    rows = ui.host_sql("SELECT name, deleted_at FROM customers")
    assert [tuple(r) for r in rows] == [("Kept", None)]
    assert ui.prefs.load().auto_sync is True
    assert ui.requests == [] and ui.queued("customers") == []


def test_same_origin_requests_are_accepted(ui: Ui, page: Page) -> None:
    same = {"Origin": ORIGIN}
    created = page.post("/api/records/customers", json={"name": "Ann"}, headers=same)
    assert created.status_code == 201
    record_id = created.get_json()["record"]["id"]
    assert page.put(f"/api/records/customers/{record_id}", json={"city": "Lyon"}, headers=same).status_code == 200
    assert page.put("/api/settings", json={"auto_sync": False}, headers=same).status_code == 200
    assert page.post("/api/sync", json={"entities": ["customers"]}, headers=same).status_code == 202
    assert page.delete(f"/api/records/customers/{record_id}", headers=same).status_code == 204
    # A GET from elsewhere is not state-changing: the secret and the Host decide
    assert page.get("/api/status", headers={"Origin": "http://evil.example"}).status_code == 200


def test_every_answer_carries_the_csp(ui: Ui, page: Page) -> None:
    answers = [
        ui.page().get("/api/status"),  # 403
        page.get("/static/js/app.js"),
        page.get("/static/nothing-here.js"),  # 404
        page.get("/"),
        page.get("/api/status"),
        page.get("/api/settings"),
        page.get("/api/history"),
        page.get("/api/conflicts"),
        page.get("/api/records/customers"),
        page.get("/api/records/nothing"),  # 404
        page.post("/api/sync", json={"direction": "sideways"}),  # 400
        page.post("/api/sync", json={}),  # 202
        page.login(),  # 303
    ]
    for response in answers:
        assert response.headers.get("Content-Security-Policy") == CSP, (response.request.path, response.status_code)
        assert response.headers.get("X-Content-Type-Options") == "nosniff"
    csp = {part.split()[0]: part.split()[1:] for part in CSP.split("; ")}
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]


def test_unknown_paths_answer_404_json(page: Page) -> None:
    response = page.get("/api/nothing")
    assert response.status_code == 404 and _json(response)["error"] == "not_found"


# -- GET /api/status -------------------------------------------------------------------------


def test_status_shape_when_nothing_happened_yet(ui: Ui, page: Page) -> None:
    status = _json(page.get("/api/status"))
    assert set(status) == {"state", "connection", "syncing", "last_sync", "entities", "open_conflicts", "rejected"}
    assert status["state"] == "online"
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
    _manual_conflict(here, other)
    # And two customers and one order the host app inserted with plain SQL since
    ui.host_sql("INSERT INTO customers (name) VALUES ('New 1')")
    ui.host_sql("INSERT INTO customers (name) VALUES ('New 2')")
    ui.host_sql("INSERT INTO orders (status) VALUES ('new')")
    # When the page asks for the status
    status = _json(page.get("/api/status"))
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
    status = _json(page.get("/api/status"))
    ((rejected),) = status["rejected"]
    assert rejected["entity"] == "customers" and rejected["reason"]
    assert status["entities"]["customers"]["rejected"] == 1


def test_status_says_syncing_while_an_entity_lock_is_held(ui: Ui, page: Page) -> None:
    with entity_lock(ui.redis, "quotes"):
        status = _json(page.get("/api/status"))
    assert (status["state"], status["syncing"]) == ("syncing", ["quotes"])
    assert _json(page.get("/api/status"))["syncing"] == []


def test_status_says_error_after_a_failed_run_while_online(ui: Ui, page: Page, here: Device) -> None:
    # Given a run that failed (its remote was unreachable)
    here.engine.remote = RemoteClient(RemoteSettings(base_url=f"http://127.0.0.1:{free_port()}/api",
                                                     api_key=API_KEY, max_attempts=1))
    assert here.sync("customers").status == "failed"
    # Then, with the connection back, the status is "error"
    status = _json(page.get("/api/status"))
    assert status["state"] == "error"
    assert status["last_sync"]["status"] == "failed"


def test_status_says_offline_when_the_remote_cannot_be_reached(ui: Ui, page: Page) -> None:
    closed = f"http://127.0.0.1:{free_port()}/api"
    assert page.put("/api/settings", json={"remote_url": closed, "api_key": USER_KEY}).status_code == 200
    status = _json(page.get("/api/status"))
    assert status["state"] == "offline"
    assert status["connection"]["state"] == "offline" and status["connection"]["detail"]


def test_status_survives_an_unreachable_broker(tmp_path: Path, central_url: str) -> None:
    ui = make_ui(tmp_path, f"redis://127.0.0.1:{free_port()}/0", central_url)
    try:
        status = _json(ui.logged_in().get("/api/status"))
        assert status["syncing"] == [] and status["state"] == "online"
    finally:
        ui.close()


# -- POST /api/sync --------------------------------------------------------------------------


def test_sync_all_queues_customers_first_with_the_default_direction(ui: Ui, page: Page) -> None:
    response = page.post("/api/sync", json={"entities": []})
    assert response.status_code == 202
    body = _json(response)
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
    body = _json(page.post("/api/sync", json={"entities": ["orders", "quotes"]}))
    assert body["entities"] == ["quotes", "orders"]
    (message,) = ui.queued("quotes")
    assert (message["kwargs"]["direction"], message["kwargs"]["policy"]) == ("pull", "manual")
    body = _json(page.post("/api/sync", json={"entities": ["customers"], "direction": "push", "policy": "local"}))
    (message,) = ui.queued("customers")
    assert message["kwargs"] == {"direction": "push", "policy": "local", "run_id": body["run_id"]}


def test_a_second_request_joins_the_waiting_run(ui: Ui, page: Page) -> None:
    first = _json(page.post("/api/sync", json={"entities": ["customers"]}))
    second = _json(page.post("/api/sync", json={"entities": ["customers"]}))
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
    assert set(_json(response)) == {"error", "message"} and _json(response)["message"]
    assert ui.requests == [] and all(ui.queued(e) == [] for e in ("customers", "quotes", "orders"))


def test_sync_rejects_a_body_that_is_not_json(page: Page) -> None:
    response = page.post("/api/sync", data="entities=customers", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400


def test_sync_answers_503_when_the_broker_is_unreachable(tmp_path: Path, central_url: str) -> None:
    ui = make_ui(tmp_path, f"redis://127.0.0.1:{free_port()}/0", central_url)
    try:
        response = ui.logged_in().post("/api/sync", json={})
        assert response.status_code == 503
        assert _json(response)["error"] == "broker_unavailable"
    finally:
        ui.close()


# -- GET /api/events -------------------------------------------------------------------------


def test_events_relays_a_published_event(ui: Ui, page: Page) -> None:
    # Given the page following the event stream
    response = page.get("/api/events", buffered=False)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Content-Security-Policy"] == CSP
    chunks = iter(response.response)
    try:
        assert _next_chunk(chunks).startswith(":")  # the opening comment
        # When a worker publishes an event on the channel, from another thread
        event = _event()
        publisher = _publish_soon(ui.ctx.redis_url, event)
        # Then the page receives it as one SSE message (keep-alive comments may come first)
        chunk = _next_data(chunks, event["run_id"])
        publisher.join(timeout=5)
        assert chunk.startswith("data: ") and chunk.endswith("\n\n")
        assert json.loads(chunk.removeprefix("data: ")) == event
    finally:
        response.close()


@pytest.mark.filterwarnings("ignore:send_bytes:DeprecationWarning")  # the session serves with send_bytes=1 too
def test_events_stream_over_real_http(tmp_path: Path, redis_db: RedisDB, central_url: str) -> None:  # noqa: F811
    # Given the UI served by waitress as the session serves it, opened with the launch token
    ui = make_ui(tmp_path, redis_db.url, central_url, port=0)
    try:
        with serve(ui.app, send_bytes=1) as server:
            ui.ctx.port = server.effective_port
            base = f"http://127.0.0.1:{server.effective_port}"
            with httpx.Client(base_url=base, timeout=5.0) as http:
                assert http.get(f"/?token={SECRET}").status_code == 303
                assert http.cookies.get(f"craftsync_{server.effective_port}") == SECRET
                with http.stream("GET", "/api/events") as stream:
                    assert stream.headers["content-type"].startswith("text/event-stream")
                    lines = stream.iter_lines()
                    assert next(lines).startswith(":")
                    # When two events are published from another thread
                    run_id = uuid.uuid4().hex
                    events = [_event(type="started", run_id=run_id, done=0),
                              _event(type="completed", run_id=run_id, done=10, status="completed")]
                    publisher = _publish_soon(ui.ctx.redis_url, *events)
                    # Then both arrive, in order
                    received = []
                    for line in lines:
                        if line.startswith("data: ") and json.loads(line[6:])["run_id"] == events[0]["run_id"]:
                            received.append(json.loads(line.removeprefix("data: ")))
                            if len(received) == 2:
                                break
                    publisher.join(timeout=5)
                    assert received == events
    finally:
        ui.close()


def test_events_answers_503_when_the_broker_is_unreachable(tmp_path: Path, central_url: str) -> None:
    ui = make_ui(tmp_path, f"redis://127.0.0.1:{free_port()}/0", central_url)
    try:
        response = ui.logged_in().get("/api/events")
        assert response.status_code == 503 and _json(response)["error"] == "broker_unavailable"
    finally:
        ui.close()


# -- GET/PUT /api/settings -------------------------------------------------------------------


def test_settings_defaults(ui: Ui, page: Page) -> None:
    settings = _json(page.get("/api/settings"))
    assert settings == {
        "remote_url": ui.central_url,
        "remote_url_locked": False,
        "api_key_set": True,  # the bundled server's key
        "api_key_masked": "••••••" + API_KEY[-4:],
        "remote_source": "demo",  # no address saved: the bundled server, with its own key
        "api_key_source": "demo",
        "api_key_saved": False,
        "auto_sync": True,
        "interval_minutes": 30,
        "sync_on_launch": True,
        "default_direction": "both",
        "conflict_policy": "remote",
    }
    assert API_KEY not in page.get("/api/settings").data.decode()


def test_settings_are_saved_and_survive_a_new_app(tmp_path: Path, redis_db: RedisDB, central_url: str,  # noqa: F811
                                                  ui: Ui, page: Page) -> None:
    changes = {"auto_sync": False, "interval_minutes": 5, "sync_on_launch": False, "default_direction": "push",
               "conflict_policy": "manual"}
    saved = _json(page.put("/api/settings", json=changes))
    assert {k: saved[k] for k in changes} == changes
    # Limits are inclusive
    assert _json(page.put("/api/settings", json={"interval_minutes": 1440}))["interval_minutes"] == 1440
    # A partial update keeps the rest
    assert _json(page.put("/api/settings", json={"auto_sync": True}))["default_direction"] == "push"
    # When the session restarts: a new PreferenceStore on the same directory, a new app
    again = make_ui(tmp_path / "restart", redis_db.url, central_url, prefs_dir=ui.prefs.directory)
    try:
        reloaded = _json(again.logged_in().get("/api/settings"))
    finally:
        again.close()
    assert reloaded == {**saved, "auto_sync": True, "interval_minutes": 1440}
    assert PreferenceStore(ui.prefs.directory).load().conflict_policy == "manual"


def test_read_only_fields_echoed_back_by_the_form_are_ignored(page: Page) -> None:
    current = _json(page.get("/api/settings"))
    echoed = {k: v for k, v in current.items() if k != "remote_url"}
    saved = _json(page.put("/api/settings", json={**echoed, "auto_sync": False}))
    assert saved == {**current, "auto_sync": False}


@pytest.mark.parametrize(
    "body",
    [{"interval_minutes": 4}, {"interval_minutes": 1441}, {"interval_minutes": "soon"},
     {"default_direction": "sideways"}, {"conflict_policy": "newest"}, {"colour": "blue"},
     {"remote_url": "ftp://central.example/api"}, {"api_key": 42}, {"api_key": "k" * 501}, ["auto_sync"]],
)
def test_invalid_settings_are_refused_and_nothing_is_saved(ui: Ui, page: Page, body: Any) -> None:
    before = _json(page.get("/api/settings"))
    response = page.put("/api/settings", json=body if isinstance(body, list) else {**body, "auto_sync": False})
    assert response.status_code == 400, body
    assert _json(response)["message"]
    assert _json(page.get("/api/settings")) == before
    assert ui.prefs.api_key() is None


def test_the_remote_url_cannot_be_changed_when_remote_api_url_sets_it(tmp_path: Path, redis_db: RedisDB,  # noqa: F811
                                                                      central_url: str) -> None:
    ui = make_ui(tmp_path, redis_db.url, central_url, locked_url=central_url)
    try:
        page = ui.logged_in()
        assert _json(page.get("/api/settings"))["remote_url_locked"] is True
        response = page.put("/api/settings", json={"remote_url": "https://elsewhere.example/api", "auto_sync": False})
        assert response.status_code == 409 and _json(response)["message"]
        assert ui.prefs.load().remote_url is None and ui.prefs.load().auto_sync is True
        # Other settings can still change
        assert _json(page.put("/api/settings", json={"auto_sync": False}))["auto_sync"] is False
        assert _json(page.get("/api/settings"))["remote_url"] == central_url
    finally:
        ui.close()


def test_the_api_key_is_stored_privately_and_only_ever_shown_masked(ui: Ui, page: Page,
                                                                    no_keyring_left_behind: None) -> None:
    bodies = []
    # When the user saves a remote URL of their own and its key
    response = page.put("/api/settings", json={"remote_url": "https://central.example/api/", "api_key": USER_KEY})
    assert response.status_code == 200
    bodies.append(response.data.decode())
    settings = _json(response)
    # Then the answer has the key masked: dots and its last four characters
    assert settings["remote_url"] == "https://central.example/api"
    assert settings["api_key_set"] is True and settings["api_key_masked"] == "••••••7531"
    bodies.append(page.get("/api/settings").data.decode())
    bodies.append(page.put("/api/settings", json={"auto_sync": False}).data.decode())
    assert all(USER_KEY not in body and USER_KEY[:-4] not in body for body in bodies)
    # And it is kept in the keyring when there is one, else in a file only the user can read
    assert ui.prefs.api_key() == USER_KEY
    assert USER_KEY not in ui.prefs.path.read_text()
    if isinstance(keyring.get_keyring(), fail.Keyring):
        mode = stat.S_IMODE(os.stat(ui.prefs.key_file).st_mode)
        assert mode == 0o600, oct(mode)
        assert ui.prefs.key_file.read_text() == USER_KEY
    else:
        assert keyring.get_password("craftsync", "remote-api-key") == USER_KEY
        assert not ui.prefs.key_file.exists()
    # When the user removes it with ""
    settings = _json(page.put("/api/settings", json={"api_key": ""}))
    # Then it is gone everywhere
    assert settings["api_key_set"] is False and settings["api_key_masked"] == ""
    assert ui.prefs.api_key() is None and not ui.prefs.key_file.exists()


def test_a_saved_key_replaces_the_bundled_one_and_is_masked(ui: Ui, page: Page, no_keyring_left_behind: None) -> None:
    settings = _json(page.put("/api/settings", json={"api_key": "  short  "}))
    assert settings["api_key_masked"] == "••••••••"  # too short to show any of it
    assert ui.prefs.api_key() == "short"
    assert "short" not in page.get("/api/settings").data.decode()
    page.put("/api/settings", json={"api_key": ""})


def test_settings_changes_are_announced_to_the_session(ui: Ui, page: Page) -> None:
    announced: list[int] = []
    ui.ctx.on_settings_changed = lambda: announced.append(1)
    assert page.put("/api/settings", json={"auto_sync": False}).status_code == 200
    assert announced == [1]
    assert page.put("/api/settings", json={"interval_minutes": 4}).status_code == 400
    assert announced == [1]


def test_saving_the_settings_form_unchanged_does_not_pin_the_bundled_servers_url(ui: Ui, page: Page) -> None:
    # Given the default session: no URL configured, the bundled server (a new port at each launch) in use
    shown = _json(page.get("/api/settings"))
    assert shown["remote_url"] == ui.central_url and ui.prefs.load().remote_url is None
    # When the settings form is saved with only auto-sync changed; the form sends the URL field
    # back as GET showed it (web/js/settings.js, changes())
    assert page.put("/api/settings", json={"remote_url": shown["remote_url"], "auto_sync": False}).status_code == 200
    # Then the bundled server's address is not saved as the user's own remote: saved, the next
    # launch would skip the bundled server and point at this launch's dead port, without a key
    assert ui.prefs.load().remote_url is None


class KeyCatcher:
    """A web server on a loopback port of its own that notes the Authorization header of
    every request (a server the saved key must never reach)."""

    def __init__(self) -> None:
        import http.server

        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                seen.append(self.headers.get("Authorization"))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status": "ok", "records": [], "next_cursor": "0", "has_more": false}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def catcher() -> Iterator[KeyCatcher]:
    one = KeyCatcher()
    yield one
    one.close()


def test_a_new_address_with_a_saved_key_asks_before_the_key_goes_there_and_saves_nothing(
    ui: Ui, page: Page, no_keyring_left_behind: None,
) -> None:
    # Given the business's server and its key, saved
    assert page.put("/api/settings", json={"remote_url": "https://a.example/api", "api_key": USER_KEY}).status_code == 200
    # When the user types another address but no key
    asked = page.put("/api/settings", json={"remote_url": "https://b.example/api"})
    # Then the app asks, next to the key field, instead of sending the old key to the new server
    assert asked.status_code == 409
    assert _json(asked)["error"] == "key_needed"
    assert _json(asked)["fields"] == {
        "api_key": "Type the API key for https://b.example/api, or choose to use the saved key with it."}
    assert ui.prefs.load().remote_url == "https://a.example/api"
    # When the user confirms: the saved key now belongs to the new address
    kept = _json(page.put("/api/settings", json={"remote_url": "https://b.example/api", "keep_key": True}))
    assert (kept["remote_url"], kept["api_key_source"], kept["api_key_set"]) == ("https://b.example/api", "saved", True)
    page.put("/api/settings", json={"api_key": ""})


def test_the_saved_key_is_used_only_with_the_address_it_was_saved_for(
    ui: Ui, page: Page, no_keyring_left_behind: None,
) -> None:
    # Given a key saved for server A, and then A's address replaced in settings.json by another program
    assert page.put("/api/settings", json={"remote_url": "https://a.example/api", "api_key": USER_KEY}).status_code == 200
    prefs = json.loads(ui.prefs.path.read_text())
    ui.prefs.path.write_text(json.dumps({**prefs, "remote_url": "https://elsewhere.example/api"}))
    # Then no key is in force for the new address
    shown = _json(page.get("/api/settings"))
    assert (shown["remote_url"], shown["api_key_set"]) == ("https://elsewhere.example/api", False)
    assert ui.ctx.remote() is None
    page.put("/api/settings", json={"api_key": ""})


def test_the_connection_test_never_sends_the_saved_key_to_another_address(
    ui: Ui, page: Page, catcher: KeyCatcher,
) -> None:
    # When the user tests an address other than the one in force without typing its key
    answer = _json(page.post("/api/settings/test", json={"remote_url": catcher.url}))
    # Then the app asks for the key and that server hears nothing
    assert answer == {"ok": False, "message": f"Type the API key for {catcher.url} to test it.", "latency_ms": None}
    assert catcher.seen == []
    # And with a key typed, exactly that key is sent
    assert _json(page.post("/api/settings/test", json={"remote_url": catcher.url, "api_key": "typed-key-1234567890"}))["ok"]
    assert catcher.seen and set(catcher.seen) == {"Bearer typed-key-1234567890"}


def test_a_refused_setting_is_named_in_plain_words_next_to_its_field(ui: Ui, page: Page) -> None:
    for body, field, sentence in [
        ({"interval_minutes": 4}, "interval_minutes", "Choose an interval from 5 minutes to 24 hours."),
        ({"remote_url": "ftp://x"}, "remote_url", "Enter the server's address, like https://sync.example.com/api."),
        ({"conflict_policy": "whatever"}, "conflict_policy",
         "Choose a conflict policy: server wins, this computer wins, or ask me."),
    ]:
        answer = page.put("/api/settings", json=body)
        assert answer.status_code == 400, body
        assert _json(answer)["fields"] == {field: sentence}
        assert "Input should" not in _json(answer)["message"]
    assert ui.prefs.load().interval_minutes == 30


# -- POST /api/settings/test -----------------------------------------------------------------


def test_connection_test_with_the_saved_settings(page: Page) -> None:
    result = _json(page.post("/api/settings/test", json={}))
    assert result["ok"] is True and result["message"]
    assert result["server_time"]
    assert result["clock_skew_s"] is not None and abs(result["clock_skew_s"]) < 5


def test_connection_test_reports_its_latency(page: Page) -> None:
    # docs/UI-API.md: {"ok", "message", "latency_ms", "server_time", "clock_skew_s"}
    result = _json(page.post("/api/settings/test", json={}))
    assert result["ok"] is True
    assert isinstance(result.get("latency_ms"), int), result


def test_connection_test_with_given_url_and_key(ui: Ui, page: Page) -> None:
    good = _json(page.post("/api/settings/test", json={"remote_url": ui.central_url + "/", "api_key": API_KEY}))
    assert good["ok"] is True
    wrong_key = _json(page.post("/api/settings/test", json={"remote_url": ui.central_url, "api_key": "wrong-key"}))
    assert wrong_key["ok"] is False and wrong_key["message"]
    assert "wrong-key" not in json.dumps(wrong_key)
    # Testing does not save anything
    assert ui.prefs.load().remote_url is None and ui.prefs.api_key() is None


def test_connection_test_against_a_closed_port(page: Page) -> None:
    started = time.monotonic()
    result = _json(page.post("/api/settings/test",
                             json={"remote_url": f"http://127.0.0.1:{free_port()}/api", "api_key": API_KEY}))
    assert result["ok"] is False
    assert result["message"] and "127.0.0.1" in result["message"]
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "body",
    [{"remote_url": "central.example/api", "api_key": API_KEY},  # typed without http://
     {"remote_url": 42, "api_key": API_KEY}, {"remote_url": "http://127.0.0.1:1/api", "api_key": 5}, ["remote_url"]],
    ids=["not-http", "url-not-a-string", "key-not-a-string", "not-an-object"],
)
def test_connection_test_of_bad_input_answers_without_a_server_error(page: Page, body: Any) -> None:
    response = page.post("/api/settings/test", json=body)
    assert response.status_code in (200, 400), (response.status_code, response.data[:300])
    result = _json(response)
    assert result.get("ok") is False or result.get("error") == "bad_request"
    assert result["message"]


# -- GET /api/conflicts and POST /api/conflicts/<id>/resolve ---------------------------------


def test_conflicts_lists_a_manual_conflict_side_by_side(ui: Ui, page: Page, here: Device, other: Device) -> None:
    record_id = _manual_conflict(here, other)
    (conflict,) = _json(page.get("/api/conflicts"))["conflicts"]
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
                                                                  central: Flask, use: str, data: Any, name: str,
                                                                  phone: Any) -> None:
    record_id = _manual_conflict(here, other)
    (conflict,) = _json(page.get("/api/conflicts"))["conflicts"]
    assert ui.queued("customers") == []
    # When the user settles it
    body = {"use": use, **({"data": data} if data is not None else {})}
    response = page.post(f"/api/conflicts/{conflict['id']}/resolve", json=body)
    # Then the chosen record is answered and stored locally, and the conflict is closed
    assert response.status_code == 200, response.get_json()
    record = _json(response)["record"]
    assert (record["id"], record["name"], record["phone"]) == (record_id, name, phone)
    stored = ui.host_sql("SELECT name, phone FROM customers WHERE id = ?", record_id)[0]
    assert (stored["name"], stored["phone"]) == (name, phone)
    assert _json(page.get("/api/conflicts"))["conflicts"] == []
    assert _json(page.get("/api/status"))["open_conflicts"] == 0
    # And a push of customers is queued
    (message,) = ui.queued("customers")
    assert message["kwargs"]["direction"] == "push"
    assert ui.queued_run("customers")["run_id"] == message["kwargs"]["run_id"]
    assert ui.requests == [(["customers"], "push", "remote")]
    # And that push brings the choice to the server
    here.sync("customers", "push")
    assert (server_live(central, "customers")[record_id]["name"], server_live(central, "customers")[record_id]["phone"]) \
        == (name, phone)


def test_resolving_with_bad_input(ui: Ui, page: Page, here: Device, other: Device) -> None:
    _manual_conflict(here, other)
    (conflict,) = _json(page.get("/api/conflicts"))["conflicts"]
    path = f"/api/conflicts/{conflict['id']}/resolve"
    for body in ({"use": "newest"}, {}, {"use": "merged", "data": ["name"]}, {"use": "merged", "data": {"colour": "x"}},
                 {"use": "merged", "data": {"email": "not an email"}}, ["local"]):
        response = page.post(path, json=body)
        assert response.status_code == 400, (body, response.get_json())
        assert _json(response)["message"]
    # Unknown ids
    assert page.post("/api/conflicts/999999/resolve", json={"use": "local"}).status_code == 404
    assert page.post("/api/conflicts/abc/resolve", json={"use": "local"}).status_code == 404
    # Nothing was settled nor queued
    assert len(_json(page.get("/api/conflicts"))["conflicts"]) == 1
    assert ui.requests == [] and ui.queued("customers") == []
    # A settled conflict is no longer open
    assert page.post(path, json={"use": "remote"}).status_code == 200
    assert page.post(path, json={"use": "remote"}).status_code == 404


# -- GET /api/history ------------------------------------------------------------------------


def test_history_lists_runs_newest_first_with_totals(ui: Ui, page: Page, here: Device, other: Device) -> None:
    assert _json(page.get("/api/history")) == {
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
    history = _json(page.get("/api/history"))
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
    assert [r["run_id"] for r in _json(page.get("/api/history?limit=1"))["runs"]] == [third.run_id]
    for bad in ("0", "abc", "-1", "1001"):
        assert page.get(f"/api/history?limit={bad}").status_code == 400, bad


# -- records ---------------------------------------------------------------------------------


def test_records_list_is_empty_with_the_editable_fields(page: Page) -> None:
    assert _json(page.get("/api/records/customers")) == {"records": [], "total": 0, "fields": CUSTOMER_FIELDS}
    assert _json(page.get("/api/records/quotes"))["fields"] == [
        "quote_number", "customer_id", "project_name", "status", "total_amount", "discount_percent", "tax_percent",
        "notes", "valid_until", "created_by"]
    assert _json(page.get("/api/records/orders"))["fields"] == [
        "order_number", "quote_id", "customer_id", "status", "order_date", "delivery_date", "total_amount",
        "payment_status", "notes"]


def test_creating_a_record_captures_it_as_a_pending_change(ui: Ui, page: Page, here: Device, central: Flask) -> None:
    response = page.post("/api/records/customers",
                         json={"name": "Ann Smith", "email": "ann@example.com", "city": "Lyon", "phone": ""})
    assert response.status_code == 201
    record = _json(response)["record"]
    assert set(record) == {"id", *CUSTOMER_FIELDS, "created_at", "updated_at", "deleted_at"}
    assert len(record["id"]) == 32 and record["created_at"] and record["updated_at"]
    assert (record["name"], record["email"], record["city"], record["phone"], record["deleted_at"]) == \
        ("Ann Smith", "ann@example.com", "Lyon", None, None)
    meta = ui.metadata("customers", record["id"])
    assert meta is not None and (meta["sync_status"], meta["local_version"]) == ("pending", 1)
    assert _json(page.get("/api/status"))["entities"]["customers"]["pending"] == 1
    # And the next sync pushes it
    here.sync("customers")
    assert server_live(central, "customers")[record["id"]]["name"] == "Ann Smith"


def test_a_new_quote_answers_with_the_number_it_was_given(ui: Ui, page: Page, here: Device) -> None:
    # Given a desktop holding a block of quote numbers (every sync of quotes keeps one)
    here.sync("quotes")
    # When the user adds a quote without a number
    record = _json(page.post("/api/records/quotes", json={"project_name": "Shed"}))["record"]
    # Then the answer shows the number the database gave it
    (stored,) = ui.host_sql("SELECT quote_number FROM quotes WHERE id = ?", record["id"])
    assert stored["quote_number"] is not None
    assert record["quote_number"] == stored["quote_number"]


@pytest.mark.parametrize("body", [{}, {"id": "0190f0e0a0b0c0d0e0f0a1b2c3d4e5f6"}], ids=["empty", "read-only-only"])
def test_a_record_with_no_field_values_can_be_added(ui: Ui, page: Page, body: dict[str, Any]) -> None:
    # A blank quote: the database gives it its id, times (and number, when it holds a block)
    response = page.post("/api/records/quotes", json=body)
    assert response.status_code == 201, (response.status_code, response.data[:200])
    record = _json(response)["record"]
    assert len(record["id"]) == 32 and record["id"] != body.get("id")
    assert ui.metadata("quotes", record["id"])["sync_status"] == "pending"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "status"),
    [({"name": "Bad", "email": "not an email"}, 400), ({"name": "X", "colour": "blue"}, 400), (["name"], 400),
     ({"name": 42}, 400)],
)
def test_creating_an_invalid_record_writes_nothing(ui: Ui, page: Page, body: Any, status: int) -> None:
    response = page.post("/api/records/customers", json=body)
    assert response.status_code == status, response.get_json()
    assert _json(response)["message"]
    assert ui.host_sql("SELECT count(*) FROM customers")[0][0] == 0
    assert ui.host_sql("SELECT count(*) FROM sync_metadata")[0][0] == 0


def test_records_of_an_unknown_entity_are_404(page: Page) -> None:
    assert page.get("/api/records/invoices").status_code == 404
    assert page.post("/api/records/invoices", json={"name": "x"}).status_code == 404
    assert page.put("/api/records/invoices/abc", json={"name": "x"}).status_code == 404
    assert page.delete("/api/records/invoices/abc").status_code == 404
    assert page.get("/api/records/sync_metadata").status_code == 404


def test_records_list_searches_orders_newest_first_and_pages(ui: Ui, page: Page) -> None:
    ids = {}
    for name, city in (("Ann", "Lyon"), ("Bob", "York"), ("Cid", "lyon-sur-mer"), ("Dee", None)):
        ids[name] = _json(page.post("/api/records/customers", json={"name": name, "city": city}))["record"]["id"]
        time.sleep(0.005)
    # Newest change first
    listing = _json(page.get("/api/records/customers"))
    assert [r["name"] for r in listing["records"]] == ["Dee", "Cid", "Bob", "Ann"] and listing["total"] == 4
    # q searches the fields, case-insensitively
    found = _json(page.get("/api/records/customers?q=LYON"))
    assert sorted(r["name"] for r in found["records"]) == ["Ann", "Cid"] and found["total"] == 2
    assert _json(page.get("/api/records/customers?q=bo"))["total"] == 1
    assert _json(page.get("/api/records/customers?q=nobody"))["records"] == []
    # limit and offset page through; total counts all matches
    second = _json(page.get("/api/records/customers?limit=2&offset=2"))
    assert [r["name"] for r in second["records"]] == ["Bob", "Ann"] and second["total"] == 4
    assert page.get("/api/records/customers?limit=x").status_code == 400
    assert page.get("/api/records/customers?offset=-1").status_code == 400
    # An update moves a record to the top
    page.put(f"/api/records/customers/{ids['Ann']}", json={"notes": "called"})
    assert _json(page.get("/api/records/customers"))["records"][0]["name"] == "Ann"


def test_records_search_treats_wildcards_as_text(page: Page) -> None:
    page.post("/api/records/customers", json={"name": "Plain", "notes": "100 units"})
    page.post("/api/records/customers", json={"name": "Discount", "notes": "100% off"})
    page.post("/api/records/customers", json={"name": "Under_score"})
    page.post("/api/records/customers", json={"name": "Underscore"})
    assert [r["name"] for r in _json(page.get("/api/records/customers?q=100%25"))["records"]] == ["Discount"]
    assert [r["name"] for r in _json(page.get("/api/records/customers?q=r_s"))["records"]] == ["Under_score"]


def test_updating_a_record_changes_it_and_captures_it(ui: Ui, page: Page) -> None:
    created = _json(page.post("/api/records/customers", json={"name": "Ann", "email": "ann@example.com"}))["record"]
    time.sleep(0.01)
    response = page.put(f"/api/records/customers/{created['id']}", json={"city": "Lyon", "email": "ann@lyon.example"})
    assert response.status_code == 200
    record = _json(response)["record"]
    assert (record["name"], record["city"], record["email"]) == ("Ann", "Lyon", "ann@lyon.example")
    assert record["updated_at"] > created["updated_at"] and record["created_at"] == created["created_at"]
    meta = ui.metadata("customers", created["id"])
    assert meta is not None and (meta["sync_status"], meta["local_version"]) == ("pending", 2)
    # Blank means empty
    assert _json(page.put(f"/api/records/customers/{created['id']}", json={"city": "  "}))["record"]["city"] is None


def test_an_invalid_update_writes_nothing(ui: Ui, page: Page) -> None:
    created = _json(page.post("/api/records/customers", json={"name": "Ann", "email": "ann@example.com"}))["record"]
    path = f"/api/records/customers/{created['id']}"
    for body in ({"email": "not an email"}, {"colour": "blue"}, {"name": ["Ann"]}, "Ann"):
        response = page.put(path, json=body)
        assert response.status_code == 400, body
        assert _json(response)["message"]
    (row,) = ui.host_sql("SELECT * FROM customers")
    assert (row["email"], row["updated_at"]) == ("ann@example.com", created["updated_at"])
    assert ui.metadata("customers", created["id"])["local_version"] == 1  # type: ignore[index]
    assert page.put("/api/records/customers/nope", json={"name": "x"}).status_code == 404


def test_deleting_a_record_is_a_soft_delete_that_is_captured(ui: Ui, page: Page, here: Device,
                                                             central: Flask) -> None:
    created = _json(page.post("/api/records/customers", json={"name": "Ann"}))["record"]
    keep = _json(page.post("/api/records/customers", json={"name": "Bob"}))["record"]
    here.sync("customers")
    # When the user deletes Ann
    response = page.delete(f"/api/records/customers/{created['id']}")
    # Then 204, and the row stays with deleted_at set
    assert response.status_code == 204 and response.data == b""
    (row,) = ui.host_sql("SELECT * FROM customers WHERE id = ?", created["id"])
    assert row["deleted_at"] is not None and row["name"] == "Ann"
    # It is no longer listed, nor editable, nor deletable again
    assert [r["id"] for r in _json(page.get("/api/records/customers"))["records"]] == [keep["id"]]
    assert page.put(f"/api/records/customers/{created['id']}", json={"name": "x"}).status_code == 404
    assert page.delete(f"/api/records/customers/{created['id']}").status_code == 404
    assert page.delete("/api/records/customers/nope").status_code == 404
    # It is captured, and the next sync deletes it on the server
    assert ui.metadata("customers", created["id"])["sync_status"] == "pending"  # type: ignore[index]
    here.sync("customers")
    assert set(server_live(central, "customers")) == {keep["id"]}
