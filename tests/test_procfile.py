"""Each part as its own process, as the ``Procfile`` runs them (issue 10, item 2).

``honcho start`` starts the broker, the server, the worker and the UI at once, so the worker
and the UI meet a broker (and the worker a server) that does not answer yet: they wait,
saying what for, instead of exiting. One test runs ``honcho start`` with the ``.env`` the
Procfile's comment gives (its ports swapped for free ones) in a folder of its own with an
empty home, syncs a customer the host app wrote through it, and stops it with Ctrl-C; the
others start a worker and the UI before their broker exists. Loopback only.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import service_missing
from tests.support.api import API_KEY
from tests.support.faults import RestartableRedis
from tests.support.process import CRAFTSYNC, OWN_VARIABLES, ROOT, Service, clean_env, free_port, wait_until
from tests.support.worker import Central, heartbeats

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(180)]

HONCHO = ROOT / ".venv" / "bin" / "honcho"
#: How long the processes get to start (imports and migrations take a few seconds each).
START_TIMEOUT_S = 60


def procfile_env() -> list[str]:
    """The ``.env`` lines the Procfile's comment gives."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    return [line.lstrip("#").strip() for line in lines if re.match(r"#\s+[A-Z_]+=\S", line)]


def user_env(home: Path) -> dict[str, str]:
    """A user's shell on a fresh machine: an empty home, the project's commands on PATH,
    none of CraftSync's settings, no display (``--browser`` finds no browser to open)."""
    drop = {*OWN_VARIABLES, "CRAFTSYNC_HOME", "DISPLAY", "WAYLAND_DISPLAY", "BROWSER"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("XDG_")}
    env.update(HOME=str(home), PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               PYTHONUNBUFFERED="1")
    return env


def family(pid: int) -> set[int]:
    try:
        return {pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))}
    except psutil.NoSuchProcess:
        return {pid}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[Path, Path, int, int]]:
    """A folder holding the project's Procfile and its ``.env`` (free ports), and an empty
    home: (folder, home, broker port, server port)."""
    if not HONCHO.exists():
        service_missing("honcho is not installed (pip install -e '.[test]')")
    folder, home = tmp_path / "app", tmp_path / "home"
    folder.mkdir()
    home.mkdir()
    broker_port, server_port = free_port(), free_port()
    env_lines = [line.replace(":6390", f":{broker_port}").replace("8000", str(server_port))
                 for line in procfile_env()]
    assert any(line.startswith("REDIS_URL=") for line in env_lines), env_lines
    (folder / ".env").write_text("\n".join(env_lines) + "\n")
    (folder / "Procfile").write_text((ROOT / "Procfile").read_text())
    yield folder, home, broker_port, server_port


def test_honcho_start_with_the_procfiles_env_syncs_a_customer_to_the_server_and_stops_on_ctrl_c(
    app: tuple[Path, Path, int, int],
) -> None:
    folder, home, _broker_port, server_port = app
    env = dict(line.split("=", 1) for line in (folder / ".env").read_text().splitlines())
    # Given `honcho start` in the folder, as a user runs it
    honcho = Service([str(HONCHO), "start"], env=user_env(home), log=folder / "honcho.log", cwd=folder)
    try:
        # When the UI is up and the worker consumes
        def ui_url() -> str | None:
            if not honcho.alive():
                pytest.fail(f"honcho stopped:\n{honcho.tail(60)}")
            found = re.search(r"UI: (http://127\.0\.0\.1:\d+/)\?token=(\S+)", honcho.log.read_text(errors="replace"))
            return f"{found.group(1)}|{found.group(2)}" if found else None

        url, token = wait_until(ui_url, timeout=START_TIMEOUT_S, what="the UI's address").split("|")
        ui = httpx.Client(base_url=url, headers={"X-CraftSync-Token": token}, timeout=10)
        database = home / ".local" / "share" / "craftsync" / "craftsync.db"
        assert database.exists(), f"no local file at {database}"
        # and the host app writes a customer into the desktop's local file
        host = sqlite3.connect(database, isolation_level=None, timeout=30)
        host.execute("INSERT INTO customers (name, email, city) VALUES ('Procfile Crafts', 'p@example.com', 'Leeds')")
        (customer_id,) = host.execute("SELECT id FROM customers WHERE name = 'Procfile Crafts'").fetchone()
        host.close()
        # and the user asks the UI for a sync of customers (refused while no worker is up yet)
        def queued() -> str | None:
            answer = ui.post("/api/sync", json={"entities": ["customers"]})
            return answer.json()["run_id"] if answer.status_code == 202 else None

        wait_until(queued, timeout=START_TIMEOUT_S, interval=0.5, what="the UI to accept a sync")

        server = httpx.Client(base_url=f"http://127.0.0.1:{server_port}/api",
                              headers={"Authorization": f"Bearer {env['REMOTE_API_KEY']}"}, timeout=10)

        def on_the_server() -> str | None:
            answer = server.get(f"/customers/{customer_id}")
            return answer.json()["name"] if answer.status_code == 200 else None

        # Then the customer reaches the server, and the customers runs (this one, the launch
        # sync's, and the one the connection monitor asks for when the server first answers)
        # all complete
        assert wait_until(on_the_server, timeout=START_TIMEOUT_S, what="the customer on the server") == "Procfile Crafts"

        def idle() -> bool:  # the launch sync too (it may still be on its quotes or orders)
            shown = ui.get("/api/status").json()
            return not shown["syncing"] and all((e["last_run"] or {}).get("status") != "running"
                                                for e in shown["entities"].values())

        wait_until(idle, timeout=START_TIMEOUT_S, interval=0.2, what="every run to end")
        assert ui.get("/api/status").json()["entities"]["customers"]["last_run"]["status"] == "completed"
        ui.close()
        server.close()
        processes = family(honcho.pid)
        assert len(processes) >= 5, "honcho and its four processes"
        # When the user presses Ctrl-C
        os.kill(honcho.pid, signal.SIGINT)
        # Then every process stops, and the session's runtime file is gone
        assert honcho.proc.wait(30) is not None
        gone = wait_until(lambda: not [p for p in processes if psutil.pid_exists(p)
                                       and psutil.Process(p).status() != psutil.STATUS_ZOMBIE],
                          timeout=30, what="every process to stop")
        assert gone
        assert not (home / ".local" / "share" / "craftsync" / "runtime.json").exists()
        said = honcho.log.read_text()
        assert "stopped (rc=1)" not in said, honcho.tail(60)
        # (the worker processes stop, not killed by the second SIGTERM their group gets; honcho
        # may still SIGKILL the worker after its 5 s of grace, as dramatiq's stop takes about 4 s)
        assert "Stopping worker process" in said and "Killing worker process" not in said, honcho.tail(60)
    finally:
        honcho.stop()


@pytest.fixture
def waiting_broker(tmp_path: Path) -> Iterator[RestartableRedis]:
    """A password-protected Redis on a free port that is not started yet."""
    directory = tmp_path / "redis"
    directory.mkdir()
    broker = RestartableRedis(directory, password="change-me")
    yield broker
    broker.close()


def test_a_worker_started_before_its_broker_waits_for_it_and_then_syncs(
    tmp_path: Path, waiting_broker: RestartableRedis, central: Central
) -> None:
    home = tmp_path / "home"
    env = clean_env(home, REDIS_URL=waiting_broker.url, CRAFTSYNC_DB=str(tmp_path / "local.db"),
                    REMOTE_API_URL=central.url, REMOTE_API_KEY=API_KEY)
    # Given a worker started while nothing answers at its broker's address
    worker = Service([*CRAFTSYNC, "worker", "--threads", "2"], env=env, log=tmp_path / "worker.log", cwd=home)
    try:
        # Then it says what it waits for, without the password, and keeps waiting
        line = f"craftsync: waiting for the broker at redis://:***@127.0.0.1:{waiting_broker.port}/0 (not answering yet) ..."
        wait_until(lambda: line in worker.tail() or not worker.alive(), timeout=START_TIMEOUT_S,
                   what="the waiting line")
        assert worker.alive(), worker.tail()
        assert "change-me" not in worker.tail()
        # When the broker starts
        waiting_broker.start()
        # Then the worker consumes, and a sync through it completes
        wait_until(lambda: heartbeats(waiting_broker.client), timeout=START_TIMEOUT_S, what="the worker to consume")
        done = subprocess.run([*CRAFTSYNC, "sync", "customers", "--wait"], env=env, cwd=home, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{done.stderr}\n{worker.tail()}"
        assert "the broker at redis://:***@" in worker.tail() and "answers" in worker.tail()
    finally:
        worker.stop()


def test_the_ui_started_before_its_external_broker_waits_for_it_and_then_serves(
    tmp_path: Path, waiting_broker: RestartableRedis, central: Central
) -> None:
    home = tmp_path / "home"
    env = clean_env(home, REDIS_URL=waiting_broker.url, CRAFTSYNC_DB=str(tmp_path / "local.db"),
                    REMOTE_API_URL=central.url, REMOTE_API_KEY=API_KEY, CRAFTSYNC_WORKERS="0")
    env.pop("DISPLAY", None)
    # Given `craftsync run --browser` started while its external broker does not answer
    run = Service([*CRAFTSYNC, "run", "--browser"], env=env, log=tmp_path / "run.log", cwd=home)
    try:
        # Then it says what it waits for, and keeps waiting
        wait_until(lambda: "waiting for the broker at redis://:***@" in run.tail() or not run.alive(),
                   timeout=START_TIMEOUT_S, what="the waiting line")
        assert run.alive(), run.tail()
        # When the broker starts, the UI comes up and answers
        waiting_broker.start()
        found = wait_until(lambda: re.search(r"UI: (http://127\.0\.0\.1:\d+/)\?token=(\S+)", run.tail()),
                           timeout=START_TIMEOUT_S, what="the UI's address")
        answer = httpx.get(f"{found.group(1)}api/status", headers={"X-CraftSync-Token": found.group(2)}, timeout=10)
        assert answer.status_code == 200 and answer.json()["broker"]["state"] == "online"
        # and it stops on SIGTERM
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(30) == 0
    finally:
        run.stop()


def test_a_worker_whose_broker_refuses_its_password_says_so_at_once(tmp_path: Path,
                                                                    waiting_broker: RestartableRedis) -> None:
    waiting_broker.start()
    home = tmp_path / "home"
    wrong = waiting_broker.url.replace("change-me", "wrong-password")
    env = clean_env(home, REDIS_URL=wrong, REMOTE_API_URL="http://127.0.0.1:9/api", REMOTE_API_KEY=API_KEY)
    home.mkdir()
    # When a worker meets a broker that answers but refuses its password
    done = subprocess.run([*CRAFTSYNC, "worker"], env=env, cwd=home, capture_output=True, text=True, timeout=60,
                          check=False)
    # Then it exits with one line naming the broker, without waiting and without the password
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"craftsync: The broker at redis://:***@127.0.0.1:{waiting_broker.port}/0 refused the password "
                     "in REDIS_URL: correct REDIS_URL."], lines
    assert "wrong-password" not in done.stderr and "waiting" not in done.stderr
