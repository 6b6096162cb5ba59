"""The worker's client of the remote API (spec §5, §6.9) against the real reference server.

The server runs in-process through ``httpx.WSGITransport`` and over real HTTP(S) on a
loopback port. Where a test needs the server to misbehave (503s, a wrong clock, non-JSON),
a small WSGI wrapper stands in front of the real app: a double of the server, not of the
client under test.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import waitress
from flask import Flask
from werkzeug.serving import make_server

from tests.support.api import API_KEY, customer, make_app
from craftsync.worker.errors import (
    AuthenticationFailed,
    ConfigurationError,
    ProtocolError,
    RateLimited,
    RemoteUnavailable,
    RequestRejected,
)
from craftsync.worker.remote import USER_AGENT, RemoteClient, RemoteSettings

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: The host name in-process requests carry; nothing resolves it, the transport is the app.
IN_PROCESS_URL = "http://localhost/api"  # served in-process: loopback, so plain HTTP is allowed


# --- fixtures and server doubles -------------------------------------------------------


@pytest.fixture
def app(sqlite_url: str) -> Flask:
    return make_app(sqlite_url)


def in_process(app: WSGIApp, **settings: Any) -> RemoteClient:
    """A client whose requests go straight into ``app``, with quick retries by default."""
    settings.setdefault("max_backoff_s", 0.05)
    return RemoteClient(RemoteSettings(IN_PROCESS_URL, API_KEY, **settings), transport=httpx.WSGITransport(app=app))


@contextmanager
def served_over_http(app: WSGIApp) -> Iterator[str]:
    """``app`` served by waitress on a loopback port; yields the API's base URL."""
    server = waitress.create_server(app, host="127.0.0.1", port=0)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}/api"
    finally:
        server.close()


@pytest.fixture
def tls_ca() -> trustme.CA:
    return trustme.CA()


@contextmanager
def served_over_https(app: WSGIApp, ca: trustme.CA) -> Iterator[str]:
    """``app`` over TLS with a certificate for 127.0.0.1 signed by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=context)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.port}/api"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def plain_http_listener() -> Iterator[int]:
    """A loopback port whose server answers anything, a TLS hello too, with a plain HTTP 400."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed at teardown
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def closed_port() -> int:
    """A loopback port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answer(status: str, body: bytes, headers: list[tuple[str, str]] | None = None) -> WSGIApp:
    """A WSGI app that always gives the same answer."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(status, [("Content-Length", str(len(body))), *(headers or [])])
        return [body]

    return app


class FailsFirst:
    """Answers the first ``failures`` requests with ``failure``, then hands them to ``app``."""

    def __init__(self, app: WSGIApp, failure: WSGIApp, failures: int) -> None:
        self.app, self.failure, self.failures = app, failure, failures
        self.requests = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.requests += 1
        if self.requests <= self.failures:
            return self.failure(environ, start_response)
        return self.app(environ, start_response)


def with_date(app: WSGIApp, offset: timedelta) -> WSGIApp:
    """``app`` behind a front whose clock is ``offset`` away from ours."""

    def dated(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            headers = [(k, v) for k, v in headers if k.lower() != "date"]
            headers.append(("Date", format_datetime(datetime.now(UTC) + offset, usegmt=True)))
            return start_response(status, headers, *rest)

        return app(environ, start)

    return dated


def json_error(status: str, code: str, message: str, headers: list[tuple[str, str]] | None = None) -> WSGIApp:
    body = json.dumps({"error": code, "message": message}).encode()
    return answer(status, body, [("Content-Type", "application/json"), *(headers or [])])


# --- talking to the server -------------------------------------------------------------


def test_pushed_records_come_back_on_pull(app: Flask) -> None:
    # Given three new customers
    records = [customer() for _ in range(3)]
    with in_process(app) as client:
        # When they are pushed, then pulled from the start
        results = client.push("customers", records)
        page = client.pull("customers")

    # Then each was created at version 1 and comes back as sent, with its version
    assert [(r["id"], r["status"], r["version"]) for r in results] == [(r["id"], "created", 1) for r in records]
    # (in change order: changes made in one millisecond come in id order)
    assert [r["id"] for r in page.records] == sorted(r["id"] for r in records)
    sent = {r["id"]: r for r in records}
    assert all(r["version"] == 1 and r["name"] == sent[r["id"]]["name"] for r in page.records)
    assert page.has_more is False and page.next_cursor != "0" and page.remaining is None


def test_pages_walk_to_the_end_with_a_count_from_the_first(app: Flask) -> None:
    # Given seven customers on the server
    with in_process(app) as client:
        sent = [customer() for _ in range(7)]
        client.push("customers", sent)

        # When they are pulled three at a time, counting what is left
        pages = [client.pull("customers", limit=3, count=True)]
        while pages[-1].has_more:
            pages.append(client.pull("customers", since=pages[-1].next_cursor, limit=3, count=True))
        after_the_end = client.pull("customers", since=pages[-1].next_cursor)

    # Then three pages hold every record once, and the count shrinks to the end
    assert [len(p.records) for p in pages] == [3, 3, 1]
    assert sorted(r["id"] for p in pages for r in p.records) == sorted(r["id"] for r in sent)
    assert [p.remaining for p in pages] == [7, 4, 1]
    assert after_the_end.records == [] and after_the_end.next_cursor == pages[-1].next_cursor


def test_push_reports_the_outcome_of_each_record(app: Flask) -> None:
    # Given two customers on the server, one of them since changed there (version 2)
    kept, changed = customer(), customer()
    with in_process(app) as client:
        client.push("customers", [kept, changed])
        client.push("customers", [{**changed, "name": "Changed on the server", "base_version": 1}])

        # When a batch re-sends one, updates it, creates one, sends a stale edit and a bad record
        fresh = customer()
        results = client.push(
            "customers",
            [
                {**kept, "base_version": 1},
                fresh,
                {**changed, "name": "Stale edit", "base_version": 1},
                {**customer(), "colour": "blue"},
            ],
        )
        again = client.push("customers", [{**kept, "name": "Edited", "base_version": 1}])

    # Then each record has its own status, and the conflict carries the server's record
    assert [r["status"] for r in results] == ["unchanged", "created", "conflict", "rejected"]
    assert results[2]["record"]["name"] == "Changed on the server"
    assert "colour" in results[3]["reason"]
    assert again[0]["status"] == "updated" and again[0]["version"] == 2


def test_number_block_reserves_consecutive_numbers(app: Flask) -> None:
    # Given a device asking for two blocks of quote numbers
    with in_process(app) as client:
        # When it reserves five, then five more
        first = client.number_block("quotes", "device-a", 5)
        second = client.number_block("quotes", "device-a", 5)

    # Then the blocks are consecutive and do not overlap
    assert (first["first"], first["last"], second["first"], second["last"]) == (1, 5, 6, 10)
    assert first["first_number"] < first["last_number"] < second["first_number"]


def test_round_trip_over_real_http_with_headers_and_clock(app: Flask) -> None:
    # Given the server on a loopback port, behind a front that records what arrives
    seen: list[dict[str, Any]] = []

    def recording(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append({k: v for k, v in environ.items() if k.startswith("HTTP_")})
        return app(environ, start_response)

    with served_over_http(recording) as base_url, RemoteClient(RemoteSettings(base_url, API_KEY)) as client:
        # When the client checks health, pushes and pulls
        health = client.health()
        results = client.push("customers", [customer()])
        page = client.pull("customers")

        # Then it is all answered, and the server's clock (waitress sends Date) agrees with ours
        assert health["status"] == "ok"
        assert results[0]["status"] == "created" and page.records[0]["id"] == results[0]["id"]
        assert client.clock_skew_s is not None and abs(client.clock_skew_s) < 5

    # And every request carried the key and the client's name
    assert all(h["HTTP_AUTHORIZATION"] == f"Bearer {API_KEY}" for h in seen)
    assert all(h["HTTP_USER_AGENT"] == USER_AGENT for h in seen)
    assert USER_AGENT.startswith("craftsync/")


def test_unknown_entity_is_rejected_with_the_servers_code_and_message(app: Flask) -> None:
    # Given a client of the real server; when it pulls an entity that does not exist
    with in_process(app) as client, pytest.raises(RequestRejected) as caught:
        client.pull("invoices")

    # Then the error carries the status, code and message of the JSON error body, and the URL
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    assert "invoices" in caught.value.message
    assert f"{IN_PROCESS_URL}/invoices" in str(caught.value)


# --- keys -------------------------------------------------------------------------------


def test_wrong_key_is_authentication_failed_and_the_key_is_never_shown(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a client with a key the server does not accept
    wrong = "wrong-key-5f1c9a7e3b"
    caplog.set_level(logging.DEBUG)
    settings = RemoteSettings(IN_PROCESS_URL, wrong)
    with RemoteClient(settings, transport=httpx.WSGITransport(app=app)) as client:
        # When it pulls
        with pytest.raises(AuthenticationFailed) as caught:
            client.pull("customers")

        # Then the failure says 401, and the key is in no message, repr or log line
        assert "401" in str(caught.value)
        for text in (str(caught.value), repr(caught.value), repr(settings), repr(client), caplog.text):
            assert wrong not in text


def test_key_is_scrubbed_even_when_the_server_echoes_it() -> None:
    # Given a (badly behaved) server that quotes the Authorization header in its error
    def echoing(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return json_error("400 Bad Request", "bad_request", f"got {environ['HTTP_AUTHORIZATION']}")(
            environ, start_response
        )

    # When a request is refused
    with in_process(echoing) as client, pytest.raises(RequestRejected) as caught:
        client.health()

    # Then neither the message nor the carried server message holds the key
    assert API_KEY not in str(caught.value) and API_KEY not in caught.value.message


# --- retries ----------------------------------------------------------------------------


def test_closed_port_is_unavailable_after_bounded_retries(caplog: pytest.LogCaptureFixture) -> None:
    # Given a server address where nothing listens, and two attempts allowed
    base_url = f"http://127.0.0.1:{closed_port()}/api"
    caplog.set_level(logging.INFO, logger="craftsync.worker.remote")
    settings = RemoteSettings(base_url, API_KEY, max_attempts=2, max_backoff_s=0.05)

    # When the client pulls
    started = time.monotonic()
    with RemoteClient(settings) as client, pytest.raises(RemoteUnavailable) as caught:
        client.pull("customers")

    # Then it tried twice, quickly, and says on one line which URL failed and why
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 1
    assert time.monotonic() - started < 2
    assert f"{base_url}/customers" in str(caught.value) and "cannot connect" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_503_twice_then_success_is_a_success(app: Flask) -> None:
    # Given a front that answers 503 (Retry-After: 0) twice before letting requests through
    flaky = FailsFirst(app, json_error("503 Service Unavailable", "busy", "later", [("Retry-After", "0")]), failures=2)
    with in_process(flaky) as client:
        # When the client pushes a batch (a POST: retried, since a re-sent batch is harmless)
        results = client.push("customers", [customer()])

    # Then the third attempt got through and the record was created once
    assert flaky.requests == 3
    assert results[0]["status"] == "created"


def test_503_on_every_attempt_is_remote_unavailable(app: Flask) -> None:
    # Given a front that always answers 503
    down = FailsFirst(app, json_error("503 Service Unavailable", "busy", "maintenance"), failures=99)
    # When the client checks health
    with in_process(down, max_attempts=3) as client, pytest.raises(RemoteUnavailable) as caught:
        client.health()

    # Then it gave up after its three attempts, naming the URL and the status
    assert down.requests == 3
    assert f"{IN_PROCESS_URL}/health" in str(caught.value) and "503" in str(caught.value)


def test_rate_limit_is_waited_out_not_failed(sqlite_url: str) -> None:
    # Given a server that allows two requests a second per key
    limited = make_app(sqlite_url, rate_limit="2/second")
    answers: list[str] = []

    def counting(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            answers.append(status.split()[0])
            return start_response(status, headers, *rest)

        return limited(environ, start)

    with in_process(counting, max_backoff_s=2.0) as client:
        (created,) = client.push("customers", [customer()])
        # When the client pulls six times in a burst
        started = time.monotonic()
        pages = [client.pull("customers") for _ in range(6)]
        elapsed = time.monotonic() - started

    # Then the server refused some of the burst with 429, the client waited, and every pull
    # came back with the page: the one record
    assert "429" in answers, answers
    assert [[r["id"] for r in page.records] for page in pages] == [[created["id"]]] * 6
    assert answers.count("200") == 7, answers
    assert elapsed >= 0.5


def test_rate_limited_when_the_budget_does_not_come_back_in_time(sqlite_url: str) -> None:
    # Given a server that allows one request a minute, and a client that waits at most 0.1 s
    limited = make_app(sqlite_url, rate_limit="1/minute")
    with in_process(limited, max_attempts=2, max_backoff_s=0.1) as client:
        client.pull("customers")
        started = time.monotonic()

        # When it pulls again
        with pytest.raises(RateLimited) as caught:
            client.pull("customers")

    # Then it gives up quickly (the cap beats Retry-After) and says how long the server asked
    assert time.monotonic() - started < 1
    assert caught.value.retry_after is not None and caught.value.retry_after > 1


def test_retry_after_as_an_http_date_is_honoured(app: Flask) -> None:
    # Given a front that answers 429 once with Retry-After as an HTTP date two seconds ahead
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    busy = FailsFirst(app, json_error("429 Too Many Requests", "rate_limited", "wait", [("Retry-After", later)]), 1)
    with in_process(busy, max_backoff_s=5) as client:
        # When the client pulls
        started = time.monotonic()
        client.pull("customers")

    # Then it waited until that date (which has one-second precision) before the second attempt
    assert busy.requests == 2
    assert time.monotonic() - started >= 0.9


# --- the server's clock and broken answers -----------------------------------------------


@pytest.mark.parametrize("minutes", [10, -10])
def test_clock_skew_is_measured_and_warned_about_once(
    app: Flask, minutes: int, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a server whose clock is ten minutes off ours
    caplog.set_level(logging.WARNING, logger="craftsync.worker.remote")
    with in_process(with_date(app, timedelta(minutes=minutes))) as client:
        # When the client makes three requests
        for _ in range(3):
            client.pull("customers")

        # Then it knows the difference, and warned once, not per request
        assert client.clock_skew_s is not None and abs(client.clock_skew_s - minutes * 60) < 5
    warnings = [r for r in caplog.records if r.name == "craftsync.worker.remote" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "differs" in warnings[0].getMessage()


def test_answer_that_is_not_json_is_a_protocol_error() -> None:
    # Given a server that answers 200 with an HTML page
    html = answer("200 OK", b"<html>hello</html>", [("Content-Type", "text/html")])

    # When the client pulls, then the answer is refused as breaking the contract
    with in_process(html) as client, pytest.raises(ProtocolError, match="not JSON"):
        client.pull("customers")


def test_answer_missing_a_key_is_a_protocol_error() -> None:
    # Given a server whose page has no next_cursor
    body = json.dumps({"records": [], "has_more": False}).encode()
    no_cursor = answer("200 OK", body, [("Content-Type", "application/json")])

    # When the client pulls, then it will not guess a cursor
    with in_process(no_cursor) as client, pytest.raises(ProtocolError, match="next_cursor"):
        client.pull("customers")


# --- TLS --------------------------------------------------------------------------------


def test_https_with_the_servers_ca_bundle_is_trusted(app: Flask, tls_ca: trustme.CA, tmp_path: Path) -> None:
    # Given the server over HTTPS with a certificate from a private CA, and that CA's bundle
    bundle = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(bundle))
    with served_over_https(app, tls_ca) as base_url:
        # When the client trusts the bundle by path, then it talks to the server
        settings = RemoteSettings(base_url, API_KEY, verify=str(bundle))
        with RemoteClient(settings) as client:
            assert client.health()["status"] == "ok"


def test_https_with_an_unknown_ca_is_a_tls_failure_at_once(app: Flask, tls_ca: trustme.CA) -> None:
    # Given the server over HTTPS with a certificate from a CA the client does not know
    with served_over_https(app, tls_ca) as base_url:
        settings = RemoteSettings(base_url, API_KEY, max_backoff_s=1)
        # When the client checks health
        started = time.monotonic()
        with RemoteClient(settings) as client, pytest.raises(RemoteUnavailable) as caught:
            client.health()
        elapsed = time.monotonic() - started

    # Then it fails on the certificate without retrying: that will not pass by itself
    assert "TLS failure" in str(caught.value) and "certificate" in str(caught.value).lower()
    assert caught.value.retryable is False and elapsed < 0.5


def test_https_with_verify_off_accepts_any_certificate(app: Flask, tls_ca: trustme.CA) -> None:
    # Given the server over HTTPS with a certificate the client cannot check
    with served_over_https(app, tls_ca) as base_url:
        # When the client is told not to verify, then it talks to the server
        settings = RemoteSettings(base_url, API_KEY, verify=False)
        with RemoteClient(settings) as client:
            assert client.health()["status"] == "ok"


def test_https_url_to_a_plain_http_port_is_a_tls_failure() -> None:
    # Given a plain-HTTP server, and a client configured for HTTPS on its port
    with plain_http_listener() as port:
        settings = RemoteSettings(f"https://127.0.0.1:{port}/api", API_KEY, connect_timeout_s=2, timeout_s=2)
        # When the client checks health, then the handshake fails as a TLS failure
        with RemoteClient(settings) as client, pytest.raises(RemoteUnavailable, match="TLS failure"):
            client.health()


def test_unreadable_ca_bundle_is_a_configuration_error(tmp_path: Path) -> None:
    # Given a CA bundle path where no file is
    settings = RemoteSettings("https://127.0.0.1:1/api", API_KEY, verify=str(tmp_path / "missing.pem"))

    # When a client is made, then the settings are refused, naming the path
    with pytest.raises(ConfigurationError, match="missing.pem"):
        RemoteClient(settings)


def test_settings_that_cannot_work_are_refused() -> None:
    # Given settings with no scheme, no key or no attempts, then each is a configuration error
    for bad in (
        {"base_url": "127.0.0.1:8000/api"},
        {"api_key": ""},
        {"max_attempts": 0},
    ):
        with pytest.raises(ConfigurationError):
            RemoteSettings(**{"base_url": "http://127.0.0.1/api", "api_key": API_KEY, **bad})  # type: ignore[arg-type]
