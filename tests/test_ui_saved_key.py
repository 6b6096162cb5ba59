"""The remote API key in the settings (spec §9): stored privately, only ever shown masked,
and sent only to the address it was saved for.

Everything is real except the window: the local SQLite store, the preferences and key file,
the reference server over HTTP as the remote (and in-process for the Device helpers that
make runs and conflicts in the UI's database), Redis with dramatiq's broker for the queue
and the event channel, and the connection monitor (the fixtures of tests/support/fixtures.py).
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from typing import Any

import keyring
import pytest
from keyring.backends import fail

from tests.support.ui import USER_KEY, Page, Ui, json_of


@pytest.fixture
def no_keyring_left_behind() -> Iterator[None]:
    yield
    if not isinstance(keyring.get_keyring(), fail.Keyring):
        try:
            keyring.delete_password("craftsync", "remote-api-key")
        except keyring.errors.KeyringError:
            pass


def test_the_api_key_is_stored_privately_and_only_ever_shown_masked(ui: Ui, page: Page,
                                                                    no_keyring_left_behind: None) -> None:
    bodies = []
    # When the user saves a remote URL of their own and its key
    response = page.put("/api/settings", json={"remote_url": "https://central.example/api/", "api_key": USER_KEY})
    assert response.status_code == 200
    bodies.append(response.data.decode())
    settings = json_of(response)
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
    settings = json_of(page.put("/api/settings", json={"api_key": ""}))
    # Then it is gone everywhere
    assert settings["api_key_set"] is False and settings["api_key_masked"] == ""
    assert ui.prefs.api_key() is None and not ui.prefs.key_file.exists()


def test_a_saved_key_replaces_the_bundled_one_and_is_masked(ui: Ui, page: Page, no_keyring_left_behind: None) -> None:
    settings = json_of(page.put("/api/settings", json={"api_key": "  short  "}))
    assert settings["api_key_masked"] == "••••••••"  # too short to show any of it
    assert ui.prefs.api_key() == "short"
    assert "short" not in page.get("/api/settings").data.decode()
    page.put("/api/settings", json={"api_key": ""})


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
    assert json_of(asked)["error"] == "key_needed"
    assert json_of(asked)["fields"] == {
        "api_key": "Type the API key for https://b.example/api, or choose to use the saved key with it."}
    assert ui.prefs.load().remote_url == "https://a.example/api"
    # When the user confirms: the saved key now belongs to the new address
    kept = json_of(page.put("/api/settings", json={"remote_url": "https://b.example/api", "keep_key": True}))
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
    shown = json_of(page.get("/api/settings"))
    assert (shown["remote_url"], shown["api_key_set"]) == ("https://elsewhere.example/api", False)
    assert ui.ctx.remote() is None
    page.put("/api/settings", json={"api_key": ""})


def test_the_connection_test_never_sends_the_saved_key_to_another_address(
    ui: Ui, page: Page, catcher: KeyCatcher,
) -> None:
    # When the user tests an address other than the one in force without typing its key
    answer = json_of(page.post("/api/settings/test", json={"remote_url": catcher.url}))
    # Then the app asks for the key and that server hears nothing
    assert answer == {"ok": False, "message": f"Type the API key for {catcher.url} to test it.", "latency_ms": None}
    assert catcher.seen == []
    # And with a key typed, exactly that key is sent
    assert json_of(page.post("/api/settings/test", json={"remote_url": catcher.url, "api_key": "typed-key-1234567890"}))["ok"]
    assert catcher.seen and set(catcher.seen) == {"Bearer typed-key-1234567890"}
