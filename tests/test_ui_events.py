"""GET /api/events (docs/UI-API.md): progress events relayed from the Redis channel as
server-sent events.

Everything is real except the window: the local SQLite store, the preferences and key file,
the reference server over HTTP as the remote (and in-process for the Device helpers that
make runs and conflicts in the UI's database), Redis with dramatiq's broker for the queue
and the event channel, and the connection monitor (the fixtures of tests/support/fixtures.py).
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from craftsync.shell.ui_server import CSP
from craftsync.worker.events import channel
from tests.support.process import RedisDB
from tests.support.ui import SECRET, Page, Ui, json_of, make_ui, serve
from tests.support.worker import redis_server


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
def test_events_stream_over_real_http(tmp_path: Path, redis_db: RedisDB, reference_url: str) -> None:
    # Given the UI served by waitress as the session serves it, opened with the launch token
    ui = make_ui(tmp_path, redis_db.url, reference_url, port=0)
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


def test_events_answers_503_when_the_broker_is_unreachable(tmp_path: Path, reference_url: str) -> None:
    # Given a session started on a broker that then went away
    with redis_server(tmp_path) as (broker, process):
        ui = make_ui(tmp_path, broker.url, reference_url, worker=False)
        process.kill()
    try:
        response = ui.logged_in().get("/api/events")
        assert response.status_code == 503 and json_of(response)["error"] == "broker_unavailable"
    finally:
        ui.close()
