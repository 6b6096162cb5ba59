"""Attacks from the same machine (issue 11), replayed and refused.

Who is not trusted here: another local user (played by ``runuser -u nobody``), another local
program that reads ``/proc`` or reaches the loopback interface, and odd input to the UI
server. Each test names what such an attacker can no longer do.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.api import in_ci
from tests.support.e2e import DesktopRun, ui_get, user_env
from tests.support.ui import Page, json_of

SECRET_HEADER = "X-CraftSync-Token"


def _need_another_user() -> None:
    """Skip (fail on CI) when this machine cannot play another local user."""
    problem = None
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        problem = "playing another local user needs root (runuser -u nobody)"
    elif shutil.which("runuser") is None:
        problem = "runuser is not installed"
    if problem:
        if in_ci():
            pytest.fail(problem)
        pytest.skip(problem)


def nobody_reads(path: Path) -> bool:
    """Whether the local user ``nobody`` can read the file at ``path``."""
    done = subprocess.run(["runuser", "-u", "nobody", "--", "cat", str(path)], capture_output=True, timeout=30)
    return done.returncode == 0


@pytest.fixture
def open_home() -> Iterator[Path]:
    """A HOME every local user can walk into (0755, like a real one), umask 022 while in use:
    only CraftSync's own modes can keep another user out of its data dir."""
    _need_another_user()
    old = os.umask(0o022)
    home = Path(tempfile.mkdtemp(prefix="craftsync-home-", dir="/tmp"))
    home.chmod(0o755)
    try:
        yield home
    finally:
        os.umask(old)
        shutil.rmtree(home, ignore_errors=True)


# -- item 7: local data readable by other users ----------------------------------------------


def test_another_local_user_cannot_read_the_local_database_opened_the_first_time(open_home: Path) -> None:
    from craftsync.worker.store import LocalStore

    # Given a world-readable folder (another user reads a file the user left there)
    folder = open_home / "shop"
    folder.mkdir(mode=0o755)
    (folder / "note.txt").write_text("public")
    assert nobody_reads(folder / "note.txt")
    # When the local store is opened for the first time, under umask 022
    database = folder / "craftsync.db"
    with LocalStore(database) as store:
        store.counts("customers")
    # Then the database and its journal files are the user's only
    for path in folder.glob("craftsync.db*"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
        assert not nobody_reads(path), path


def test_another_local_user_cannot_read_anything_craftsync_keeps_in_its_data_dir(open_home: Path,
                                                                                tmp_path: Path) -> None:
    # Given a first launch under umask 022, in a HOME other users may walk into
    run = DesktopRun(open_home, user_env(open_home), log=tmp_path / "run.log").start()
    try:
        folder = open_home / ".local" / "share" / "craftsync"
        (open_home / "note.txt").write_text("public")
        assert nobody_reads(open_home / "note.txt")
        # When the user saves a setting (settings.json) and the demo server made its database
        response = __import__("httpx").put(f"{run.base_url}/api/settings", json={"interval_minutes": 45},
                                           headers={SECRET_HEADER: run.launch_url.split("token=", 1)[1]}, timeout=10)
        assert response.status_code == 200, response.text
        expected = ["craftsync.db", "demo-central.db", "settings.json", "runtime.json"]
        for name in expected:
            assert (folder / name).is_file(), sorted(p.name for p in folder.iterdir())
        # Then the folder is 0700, every file in it 0600, and another user reads none of them
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        for path in folder.iterdir():
            if path.is_file():
                assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
        for name in expected:
            assert not nobody_reads(folder / name), name
    finally:
        run.stop()


def test_a_data_dir_an_older_version_left_open_is_closed_at_the_next_launch(open_home: Path, tmp_path: Path) -> None:
    # Given a data dir 0755 with a settings file 0644, as an older version left them
    folder = open_home / ".local" / "share" / "craftsync"
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    (folder / "settings.json").write_text(json.dumps({"interval_minutes": 60}))
    (folder / "settings.json").chmod(0o644)
    assert nobody_reads(folder / "settings.json")
    # When the app starts
    run = DesktopRun(open_home, user_env(open_home), log=tmp_path / "run.log").start()
    try:
        # Then another user can no longer read it
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(folder / "settings.json").st_mode) == 0o600
        assert not nobody_reads(folder / "settings.json")
        assert ui_get(run, "/api/settings")["interval_minutes"] == 60  # and the user's settings are kept
    finally:
        run.stop()


# -- item 8: odd numbers in the UI server's query strings ------------------------------------


@pytest.mark.parametrize("path", ["/api/history?limit=²", "/api/history?limit=٣", "/api/history?limit=" + "9" * 5000,
                                  "/api/records/customers?offset=①", "/api/records/customers?limit=²",
                                  "/api/records/customers?offset=" + "1" * 5000])
def test_a_number_written_in_other_digits_gets_a_plain_refusal_not_a_server_error(page: Page, path: str) -> None:
    # When the page asks with a "number" that is not plain ASCII digits
    response = page.get(path)
    # Then it is a 400 with one plain sentence, not a 500
    assert response.status_code == 400, (response.status_code, response.data[:300])
    message = json_of(response)["message"]
    assert "whole number" in message and "Traceback" not in message and "\n" not in message
