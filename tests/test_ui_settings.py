"""GET/PUT /api/settings (docs/UI-API.md): defaults, saving, refusals in plain words, the
locked remote address, and announcing changes to the session.

Everything is real except the window: the local SQLite store, the preferences and key file,
the reference server over HTTP as the remote (and in-process for the Device helpers that
make runs and conflicts in the UI's database), Redis with dramatiq's broker for the queue
and the event channel, and the connection monitor (the fixtures of tests/support/fixtures.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from craftsync.contract.records import now_iso
from craftsync.shell.preferences import PreferenceStore
from tests.support.api import API_KEY
from tests.support.process import RedisDB
from tests.support.ui import Page, Ui, json_of, make_ui


# -- GET/PUT /api/settings -------------------------------------------------------------------


def test_settings_defaults(ui: Ui, page: Page) -> None:
    settings = json_of(page.get("/api/settings"))
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


def test_settings_are_saved_and_survive_a_new_app(tmp_path: Path, redis_db: RedisDB, reference_url: str,
                                                  ui: Ui, page: Page) -> None:
    changes = {"auto_sync": False, "interval_minutes": 5, "sync_on_launch": False, "default_direction": "push",
               "conflict_policy": "manual"}
    saved = json_of(page.put("/api/settings", json=changes))
    assert {k: saved[k] for k in changes} == changes
    # Limits are inclusive
    assert json_of(page.put("/api/settings", json={"interval_minutes": 1440}))["interval_minutes"] == 1440
    # A partial update keeps the rest
    assert json_of(page.put("/api/settings", json={"auto_sync": True}))["default_direction"] == "push"
    # When the session restarts: a new PreferenceStore on the same directory, a new app
    again = make_ui(tmp_path / "restart", redis_db.url, reference_url, prefs_dir=ui.prefs.directory)
    try:
        reloaded = json_of(again.logged_in().get("/api/settings"))
    finally:
        again.close()
    assert reloaded == {**saved, "auto_sync": True, "interval_minutes": 1440}
    assert PreferenceStore(ui.prefs.directory).load().conflict_policy == "manual"


def test_read_only_fields_echoed_back_by_the_form_are_ignored(page: Page) -> None:
    current = json_of(page.get("/api/settings"))
    echoed = {k: v for k, v in current.items() if k != "remote_url"}
    saved = json_of(page.put("/api/settings", json={**echoed, "auto_sync": False}))
    assert saved == {**current, "auto_sync": False}


@pytest.mark.parametrize(
    "body",
    [{"interval_minutes": 4}, {"interval_minutes": 1441}, {"interval_minutes": "soon"},
     {"default_direction": "sideways"}, {"conflict_policy": "newest"}, {"colour": "blue"},
     {"remote_url": "ftp://central.example/api"}, {"api_key": 42}, {"api_key": "k" * 501}, ["auto_sync"]],
)
def test_invalid_settings_are_refused_and_nothing_is_saved(ui: Ui, page: Page, body: Any) -> None:
    before = json_of(page.get("/api/settings"))
    response = page.put("/api/settings", json=body if isinstance(body, list) else {**body, "auto_sync": False})
    assert response.status_code == 400, body
    assert json_of(response)["message"]
    assert json_of(page.get("/api/settings")) == before
    assert ui.prefs.api_key() is None


def test_the_remote_url_cannot_be_changed_when_remote_api_url_sets_it(tmp_path: Path, redis_db: RedisDB,
                                                                      reference_url: str) -> None:
    ui = make_ui(tmp_path, redis_db.url, reference_url, locked_url=reference_url)
    try:
        page = ui.logged_in()
        assert json_of(page.get("/api/settings"))["remote_url_locked"] is True
        response = page.put("/api/settings", json={"remote_url": "https://elsewhere.example/api", "auto_sync": False})
        assert response.status_code == 409 and json_of(response)["message"]
        assert ui.prefs.load().remote_url is None and ui.prefs.load().auto_sync is True
        # Other settings can still change
        assert json_of(page.put("/api/settings", json={"auto_sync": False}))["auto_sync"] is False
        assert json_of(page.get("/api/settings"))["remote_url"] == reference_url
    finally:
        ui.close()


def test_settings_changes_are_announced_to_the_session(ui: Ui, page: Page) -> None:
    # Given a session where failed runs still count (nothing has cleared them)
    assert ui.session.errors_cleared_at == ""
    # When a setting is saved, the session applies the change: runs that failed before now
    # are not about the new settings, and no longer make the status "error"
    before = now_iso()
    assert page.put("/api/settings", json={"auto_sync": False}).status_code == 200
    assert before <= ui.session.errors_cleared_at <= now_iso()
    # A refused change is not announced
    ui.session.errors_cleared_at = ""
    assert page.put("/api/settings", json={"interval_minutes": 4}).status_code == 400
    assert ui.session.errors_cleared_at == ""


def test_saving_the_settings_form_unchanged_does_not_pin_the_bundled_servers_url(ui: Ui, page: Page) -> None:
    # Given the default session: no URL configured, the bundled server (a new port at each launch) in use
    shown = json_of(page.get("/api/settings"))
    assert shown["remote_url"] == ui.central_url and ui.prefs.load().remote_url is None
    # When the settings form is saved with only auto-sync changed; the form sends the URL field
    # back as GET showed it (web/js/settings.js, changes())
    assert page.put("/api/settings", json={"remote_url": shown["remote_url"], "auto_sync": False}).status_code == 200
    # Then the bundled server's address is not saved as the user's own remote: saved, the next
    # launch would skip the bundled server and point at this launch's dead port, without a key
    assert ui.prefs.load().remote_url is None


def test_a_refused_setting_is_named_in_plain_words_next_to_its_field(ui: Ui, page: Page) -> None:
    for body, field, sentence in [
        ({"interval_minutes": 4}, "interval_minutes", "Choose an interval from 5 minutes to 24 hours."),
        ({"remote_url": "ftp://x"}, "remote_url", "Enter the server's address, like https://sync.example.com/api."),
        ({"conflict_policy": "whatever"}, "conflict_policy",
         "Choose a conflict policy: server wins, this computer wins, or ask me."),
    ]:
        answer = page.put("/api/settings", json=body)
        assert answer.status_code == 400, body
        assert json_of(answer)["fields"] == {field: sentence}
        assert "Input should" not in json_of(answer)["message"]
    assert ui.prefs.load().interval_minutes == 30
