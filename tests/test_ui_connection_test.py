"""POST /api/settings/test (docs/UI-API.md): the connection test with saved or given
settings, its latency, and its answers to bad input and closed ports.

Everything is real except the window: the local SQLite store, the preferences and key file,
the reference server over HTTP as the remote (and in-process for the Device helpers that
make runs and conflicts in the UI's database), Redis with dramatiq's broker for the queue
and the event channel, and the connection monitor (the fixtures of tests/support/fixtures.py).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.support.api import API_KEY
from tests.support.ui import Page, Ui, free_port, json_of


# -- POST /api/settings/test -----------------------------------------------------------------


def test_connection_test_with_the_saved_settings(page: Page) -> None:
    result = json_of(page.post("/api/settings/test", json={}))
    assert result["ok"] is True and result["message"]
    assert result["server_time"]
    assert result["clock_skew_s"] is not None and abs(result["clock_skew_s"]) < 5


def test_connection_test_reports_its_latency(page: Page) -> None:
    # docs/UI-API.md: {"ok", "message", "latency_ms", "server_time", "clock_skew_s"}
    result = json_of(page.post("/api/settings/test", json={}))
    assert result["ok"] is True
    assert isinstance(result.get("latency_ms"), int), result


def test_connection_test_with_given_url_and_key(ui: Ui, page: Page) -> None:
    good = json_of(page.post("/api/settings/test", json={"remote_url": ui.central_url + "/", "api_key": API_KEY}))
    assert good["ok"] is True
    wrong_key = json_of(page.post("/api/settings/test", json={"remote_url": ui.central_url, "api_key": "wrong-key"}))
    assert wrong_key["ok"] is False and wrong_key["message"]
    assert "wrong-key" not in json.dumps(wrong_key)
    # Testing does not save anything
    assert ui.prefs.load().remote_url is None and ui.prefs.api_key() is None


def test_connection_test_against_a_closed_port(page: Page) -> None:
    started = time.monotonic()
    result = json_of(page.post("/api/settings/test",
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
    result = json_of(response)
    assert result.get("ok") is False or result.get("error") == "bad_request"
    assert result["message"]
