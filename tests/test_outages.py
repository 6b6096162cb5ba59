"""The broker and the server restarted while a sync runs (issue 10, item 3).

Real processes only: a ``redis-server`` of the test's own on a free loopback port (killed,
or shut down and started again), the reference server as ``craftsync server`` (killed and
started again on its port and database), and ``craftsync worker`` processes. Each case
pushes 20,000 customers the host app inserted, takes a service away once the run is under
way (the local file holds some of them synced and some still pending), and checks what the
user gets: the run ends, completed or failed with a plain reason, never left "running";
``craftsync status`` shows the outage while it lasts; once the service is back the next
sync completes without anyone cleaning up the queue or the entity's lock; and both sides
then hold the same 20,000 records, each once. ``craftsync sync --wait`` whose broker goes
away while it follows the run ends with one plain line.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from craftsync.worker.events import channel
from tests.support.device import Device, assert_identical
from tests.support.faults import RestartableRedis, start_central, stop_central
from tests.support.process import CRAFTSYNC, wait_until
from tests.support.worker import Central

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(240)]

RECORDS = 20_000
#: Longest a push of RECORDS customers may take here (it takes a few seconds).
RUN_TIMEOUT_S = 90


@pytest.fixture(params=["restarted with its data", "killed and started empty"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RestartableRedis]:
    """A Redis of the test's own; ``broker.persist`` says whether it keeps its data over a restart."""
    directory = tmp_path / "redis"
    directory.mkdir()
    one = RestartableRedis(directory, persist=request.param == "restarted with its data").start()
    try:
        yield one
    finally:
        one.close()


@pytest.fixture
def desktop(tmp_path: Path, broker: RestartableRedis, central: Central) -> Iterator[Device]:
    """A desktop syncing with ``central`` through one ``craftsync worker`` on ``broker``."""
    one = Device.with_workers(tmp_path, central, broker.db)
    yield one
    one.close()


def synced(device: Device) -> int:
    return int(device.sql("SELECT count(*) FROM sync_metadata WHERE sync_status = 'synced'")[0][0])


def push_under_way(device: Device, *entities: str) -> str:
    """A worker pushing RECORDS customers the host app inserted (the first run of a sync of
    ``entities``, default customers), past its first batch: the run id."""
    device.insert_customers(RECORDS)
    device.start_worker()
    queued = device.cli("sync", *(entities or ["customers"]), "--direction", "push")
    assert queued.returncode == 0, queued.stderr
    run_id = re.search(r"\(([0-9a-f]{32})\)", queued.stdout).group(1)  # type: ignore[union-attr]
    wait_until(lambda: 0 < synced(device) < RECORDS, timeout=RUN_TIMEOUT_S, interval=0.01,
               what="the push to be under way")
    return run_id


def run_ended(device: Device, run_id: str) -> dict[str, Any]:
    """The run's row in the local file once it is no longer running."""
    row: dict[str, Any] = wait_until(lambda: (r := device.run(run_id)) and r["status"] != "running" and r,
                                     timeout=RUN_TIMEOUT_S, what=f"run {run_id} to end")
    return row


def status(device: Device) -> dict[str, Any]:
    shown = device.cli("status", "--json")
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout))


def sync_completes(device: Device) -> None:
    done = device.cli("sync", "customers", "--wait", "--json")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{device.workers[-1].tail()}"
    assert json.loads(done.stdout)["status"] == "completed"


def test_a_broker_restarted_mid_run_loses_nothing_and_the_next_sync_completes(
    desktop: Device, broker: RestartableRedis
) -> None:
    # Given a worker syncing everything, pushing 20,000 customers first, past its first batch
    run_id = push_under_way(desktop, "customers", "quotes", "orders")
    # When the broker goes away: shut down cleanly (saving its data) or killed (losing it)
    if broker.save:
        broker.stop()
    else:
        broker.kill()
    # Then the run goes on without it and completes: its outcome is in the local file
    assert run_ended(desktop, run_id)["status"] == "completed"
    # and the status says the broker is away, while it is
    away = status(desktop)["broker"]
    assert away["state"] == "unreachable" and "not answering" in away["detail"]
    # When the broker is back
    broker.start()
    assert status(desktop)["broker"]["state"] == "online"
    # Then the rest of the chain, quotes then orders, runs once it is back
    def chain_done() -> bool:
        last = status(desktop)["entities"]
        return all((last[e]["last_run"] or {}).get("status") == "completed" for e in ("quotes", "orders"))

    wait_until(chain_done, timeout=RUN_TIMEOUT_S, interval=0.5, what="quotes and orders to be synced")
    # Then the next sync completes through the same worker: the queue and the lock recovered
    sync_completes(desktop)
    assert len(desktop.workers) == 1 and desktop.workers[0].alive()
    # and both sides hold the same 20,000 customers, each once, nothing pending
    assert_identical(desktop, "customers", count=RECORDS)
    versions, seqs, _counter = desktop.central.bookkeeping("customers")
    assert set(versions.values()) == {1} and len(seqs) == RECORDS, "a customer was written twice"


@pytest.fixture
def device_on_private_redis(tmp_path: Path, central: Central) -> Iterator[Device]:
    """A desktop syncing through ``craftsync worker`` on a Redis of its own (``sync --wait``
    follows the server-wide events channel, which others' runs would fill)."""
    directory = tmp_path / "redis"
    directory.mkdir()
    redis_server = RestartableRedis(directory).start()
    one = Device.with_workers(tmp_path, central, redis_server.db)
    yield one
    one.close()
    redis_server.close()


@pytest.mark.parametrize("crash", [True, False], ids=["killed", "shut down"])
def test_a_server_restarted_mid_run_loses_nothing_and_the_next_sync_completes(
    device_on_private_redis: Device, central: Central, tmp_path: Path, crash: bool
) -> None:
    device = device_on_private_redis
    # Given a worker pushing 20,000 customers, past its first batch
    run_id = push_under_way(device)
    # When the server goes away mid-run and comes back on its port and database
    stop_central(central, crash=crash)
    start_central(central, tmp_path)
    # Then the run ends, completed (its requests were sent again) or failed with a plain reason
    run = run_ended(device, run_id)
    assert run["status"] in ("completed", "failed"), run
    if run["status"] == "failed":
        assert run["error"] and "Traceback" not in run["error"], run["error"]
    # and the next sync completes, with both sides holding the same 20,000 customers, each once
    sync_completes(device)
    assert_identical(device, "customers", count=RECORDS)
    versions, seqs, _counter = central.bookkeeping("customers")
    assert set(versions.values()) == {1} and len(seqs) == RECORDS, "a customer was written twice"


def test_a_server_away_for_long_fails_the_run_with_a_reason_and_the_status_shows_it(
    device_on_private_redis: Device, central: Central, tmp_path: Path
) -> None:
    device = device_on_private_redis
    # Given a worker pushing 20,000 customers, past its first batch
    run_id = push_under_way(device)
    # When the server goes away for longer than the worker's retries
    stop_central(central, crash=True)
    # Then the run fails with a sentence a shop owner reads
    run = run_ended(device, run_id)
    assert run["status"] == "failed" and run["error"], run
    assert "Traceback" not in run["error"] and "Error 111" not in run["error"], run["error"]
    # and the status shows the server is away, and the failed run with its reason
    away = status(device)
    assert away["connection"]["state"] != "online", away["connection"]
    assert away["entities"]["customers"]["last_run"]["status"] == "failed"
    assert away["entities"]["customers"]["pending"] > 0
    # When the server is back, the next sync completes and nothing is lost or written twice
    start_central(central, tmp_path)
    assert status(device)["connection"]["state"] == "online"
    sync_completes(device)
    assert_identical(device, "customers", count=RECORDS)
    versions, seqs, _counter = central.bookkeeping("customers")
    assert set(versions.values()) == {1} and len(seqs) == RECORDS, "a customer was written twice"


def test_a_sync_followed_with_wait_whose_broker_goes_away_says_so_in_one_line(
    tmp_path: Path, central: Central
) -> None:
    directory = tmp_path / "redis"
    directory.mkdir()
    broker = RestartableRedis(directory).start()
    device = Device.with_workers(tmp_path, central, broker.db)
    try:
        # Given `craftsync sync --wait` following its run (no worker has taken it yet)
        follower = subprocess.Popen([*CRAFTSYNC, "sync", "customers", "--wait"], env=device.env(), cwd=device.home,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    stdin=subprocess.DEVNULL)
        wait_until(lambda: broker.client.pubsub_numsub(channel(broker.client))[0][1] > 0, timeout=60,
                   what="the CLI to follow the events")
        # When the broker is killed
        broker.kill()
        # Then the CLI ends with one plain line saying the broker is not answering, and exit code 1
        _out, err = follower.communicate(timeout=60)
        assert follower.returncode == 1, err
        assert err.strip().splitlines() == [
            f"craftsync: The broker at {broker.url} is not answering: check that it runs, then try again."]
    finally:
        device.close()
        broker.close()
