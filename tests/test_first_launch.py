"""The first launch as a new user meets it: an empty HOME, no CraftSync variable at all (not
even ``CRAFTSYNC_HOME``), nothing prepared by the test. ``craftsync run --browser`` must find
its own way: create its data dir, start the demo server, reach "Online" with demo data, and
launch again after the user saved settings. The UI server is driven over HTTP with the
launch secret, as the page does; the browser journey is in ``test_e2e_first_hour.py``.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.e2e import DesktopRun, RemoteServer, ui_get, user_env, wait_run
from tests.support.process import wait_until
from tests.support.process import free_port
from tests.support.worker import CRAFTSYNC

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEY = "first-launch-central-key-0123456789"


def data_dir(home: Path) -> Path:
    return home / ".local" / "share" / "craftsync"


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., DesktopRun]]:
    """Start ``craftsync run --browser`` for a HOME; every run is stopped at teardown."""
    runs: list[DesktopRun] = []

    def start(home: Path, **variables: str) -> DesktopRun:
        home.mkdir(parents=True, exist_ok=True)
        run = DesktopRun(home, user_env(home, **variables), log=tmp_path / f"run-{len(runs)}.log")
        runs.append(run)
        return run.start()

    yield start
    for run in runs:
        run.stop()


def secret(run: DesktopRun) -> dict[str, str]:
    return {"X-CraftSync-Token": run.launch_url.split("token=", 1)[1]}


def ui(run: DesktopRun, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, f"{run.base_url}{path}", json=body, headers=secret(run), timeout=30)


def wait_state(run: DesktopRun, wanted: str, *, timeout: float = 60) -> dict[str, Any]:
    return dict(wait_until(lambda: (s := ui_get(run, "/api/status"))["state"] == wanted and s,
                           timeout=timeout, interval=0.3, what=f"the status to say {wanted}"))


def test_a_first_launch_on_an_empty_home_reaches_online_with_demo_data_and_a_private_data_dir(
    tmp_path: Path, launch: Callable[..., DesktopRun],
) -> None:
    # Given a HOME with nothing in it and no CraftSync variable
    home = tmp_path / "home"
    home.mkdir()
    # When the user starts the app
    run = launch(home)
    # Then it prints its UI line (start() waits for it), says Online, and holds the demo data
    status = wait_state(run, "online")
    assert status["connection"]["state"] == "online"
    wait_until(lambda: ui_get(run, "/api/records/customers")["total"] > 0, timeout=60, interval=0.5,
               what="the demo customers to arrive")
    # And its data dir was made under HOME, readable by the user only
    folder = data_dir(home)
    assert (folder / "craftsync.db").is_file()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert "Traceback" not in run.output()


def test_saving_settings_with_the_demo_address_still_launches_the_demo_server_next_time(
    tmp_path: Path, launch: Callable[..., DesktopRun],
) -> None:
    # Given a first launch whose settings the user saved, the demo server's address included
    home = tmp_path / "home"
    run = launch(home)
    wait_state(run, "online")
    shown = ui_get(run, "/api/settings")
    assert shown["remote_source"] == "demo"
    saved = ui(run, "PUT", "/api/settings", {"remote_url": shown["remote_url"], "conflict_policy": "manual"})
    assert saved.status_code == 200, saved.text
    assert saved.json()["remote_source"] == "demo"  # the demo's address is not pinned: its port changes
    run.stop()
    # When the app is started again
    again = launch(home)
    # Then the demo server is there again, online, with the saved policy, and a sync completes
    wait_state(again, "online")
    settings = ui_get(again, "/api/settings")
    assert (settings["remote_source"], settings["conflict_policy"]) == ("demo", "manual")
    answer = ui(again, "POST", "/api/sync", {"entities": ["customers"]})
    assert answer.status_code == 202, answer.text
    assert wait_run(again, answer.json()["run_id"], timeout=60)["status"] == "completed"


def test_an_address_without_a_key_says_so_at_once_and_clearing_it_brings_the_demo_server_back(
    tmp_path: Path, launch: Callable[..., DesktopRun],
) -> None:
    # Given a running app on its demo server
    home = tmp_path / "home"
    run = launch(home)
    wait_state(run, "online")
    # When the user saves another server's address but no key
    other = f"http://127.0.0.1:{free_port()}/api"
    assert ui(run, "PUT", "/api/settings", {"remote_url": other}).status_code == 200
    # Then pressing Sync says at once why nothing can happen (nothing is queued)
    refused = ui(run, "POST", "/api/sync", {"entities": ["customers"]})
    assert refused.status_code == 409, refused.text
    assert refused.json()["message"] == f"There is no API key for {other}: enter it in Settings."
    # When the user clears the address again (no restart)
    cleared = ui(run, "PUT", "/api/settings", {"remote_url": ""})
    assert cleared.status_code == 200 and cleared.json()["remote_source"] == "demo", cleared.text
    # Then the demo server is back and a sync completes
    wait_state(run, "online")
    answer = ui(run, "POST", "/api/sync", {"entities": ["customers"]})
    assert answer.status_code == 202, answer.text
    assert wait_run(run, answer.json()["run_id"], timeout=60)["status"] == "completed"


def test_a_wrong_key_shows_cannot_sync_at_once_and_the_right_key_brings_online_back(
    tmp_path: Path, launch: Callable[..., DesktopRun],
) -> None:
    central = RemoteServer(tmp_path, KEY).start()
    try:
        home = tmp_path / "home"
        run = launch(home)
        wait_state(run, "online")
        # When the user enters the business's server with a wrong key
        wrong = ui(run, "PUT", "/api/settings", {"remote_url": central.url, "api_key": "not-the-right-key-000000"})
        assert wrong.status_code == 200, wrong.text
        # Then the status says the key is refused, before any sync has failed
        status = wait_state(run, "error", timeout=30)
        assert status["connection"]["state"] == "refused"
        assert status["connection"]["detail"] == (
            f"The server at {central.url} refused the API key: enter the right key in Settings.")
        # And a sync fails, with that reason
        failed = ui(run, "POST", "/api/sync", {"entities": ["customers"]})
        assert wait_run(run, failed.json()["run_id"], timeout=60)["status"] == "failed"
        # When the user types the right key: Online again, no lingering "Sync error"
        assert ui(run, "PUT", "/api/settings", {"api_key": KEY}).status_code == 200
        wait_state(run, "online", timeout=30)
    finally:
        central.close()


def test_a_database_outside_the_data_dir_on_a_fresh_machine_launches(
    tmp_path: Path, launch: Callable[..., DesktopRun],
) -> None:
    # Given CRAFTSYNC_DB in a folder that does not exist yet, and an empty HOME
    database = tmp_path / "shop" / "data" / "craft-tools.db"
    run = launch(tmp_path / "home", CRAFTSYNC_DB=str(database))
    # Then the app starts, the demo server included (its file lives in the new data dir)
    wait_state(run, "online")
    assert database.is_file()
    assert (data_dir(tmp_path / "home") / "demo-central.db").is_file()


def test_status_on_an_empty_home_exits_0_with_never_synced(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    result = subprocess.run([*CRAFTSYNC, "status"], env=user_env(home), capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "never synced" in result.stdout and result.stderr == ""


def test_with_no_workers_a_sync_says_to_start_one_and_runs_once_one_is_started(
    tmp_path: Path, launch: Callable[..., DesktopRun],
) -> None:
    # Given the app started with CRAFTSYNC_WORKERS=0 (the user runs workers themselves)
    home = tmp_path / "home"
    run = launch(home, CRAFTSYNC_WORKERS="0")
    wait_state(run, "online")
    # When the user presses Sync: it says at once what to do, rather than "Queued…" forever
    refused = ui(run, "POST", "/api/sync", {"entities": ["customers"]})
    assert refused.status_code == 409, refused.text
    assert refused.json()["message"] == (
        "No sync worker is running (CRAFTSYNC_WORKERS is 0): start one with 'craftsync worker'.")
    # When the user starts a worker (it finds the running app's broker by itself)
    worker = subprocess.Popen([*CRAFTSYNC, "worker"], env=user_env(home), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        answer = wait_until(
            lambda: (r := ui(run, "POST", "/api/sync", {"entities": ["customers"]})).status_code == 202 and r,
            timeout=60, interval=0.5, what="the sync to be accepted once a worker runs")
        assert wait_run(run, answer.json()["run_id"], timeout=60)["status"] == "completed"
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(20)
