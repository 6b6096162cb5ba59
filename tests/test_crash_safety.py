"""A worker SIGKILLed at any instant of a sync loses nothing and duplicates nothing (spec §6.4).

Real worker processes on real Redis, against the reference server over HTTP. Each case
starts a 20,000-record push (rows the host app inserted) or pull (records another device
put on the server), kills the worker at a random moment of the run, starts a new worker and
requests one more sync; then both sides must hold the same 20,000
records, each once, with nothing left pending. Set ``CRAFTSYNC_CRASH_SEED`` to replay a run.
"""

from __future__ import annotations

import os
import random
import time

import pytest

pytest.register_assert_rewrite("tests.support.worker")  # before the import: its asserts explain themselves

from tests.support.worker import (  # noqa: E402
    Device,
    EventLog,
    assert_identical,
    customers_for_server,
    queue_broker,
)
from craftsync.worker.queue import request_sync  # noqa: E402

pytest_plugins = ("tests.support.worker",)  # its fixtures: redis_db, central, device, events...

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]

RECORDS = 20_000
#: Records per progress event (a pushed batch, a pulled page) and about how long one takes
#: here: the kill comes after a random progress event, at a random moment of the next step.
STEP = {"push": 1000, "pull": 5000}
STEP_TIME_S = {"push": 0.15, "pull": 0.25}
SEED = int(os.environ.get("CRAFTSYNC_CRASH_SEED") or time.time_ns() % 1_000_000)
CASES = [(direction, attempt) for direction in ("push", "pull") for attempt in range(5)]


@pytest.mark.parametrize(("direction", "attempt"), CASES, ids=[f"{d}-{a}" for d, a in CASES])
def test_worker_killed_mid_sync_loses_and_duplicates_nothing(
    device: Device, events: EventLog, direction: str, attempt: int
) -> None:
    rng = random.Random(f"{SEED}-{direction}-{attempt}")
    after = rng.randrange(0, RECORDS, STEP[direction])
    delay = rng.uniform(0, STEP_TIME_S[direction])
    where = f"(seed {SEED}: kill {delay:.2f} s after {after} records)"
    # Given 20,000 customers on one side only: the host app's table, or the server
    if direction == "push":
        device.db.insert_customers(RECORDS)
    else:
        device.central.push("customers", customers_for_server(RECORDS))
    doomed = device.start_worker()
    crashed = request(device, direction)
    events.wait_for(lambda e: e["run_id"] == crashed and e["done"] >= after, timeout=60,
                    what=f"the {direction} to reach {after} records")
    # When the worker is SIGKILLed at a random moment of the run
    time.sleep(delay)
    doomed.kill()
    last = events.of({crashed})[-1]
    print(f"{direction}: killed after {last['type']} {last['done']}/{RECORDS} {where}")
    # And a new worker runs one more sync
    device.start_worker()
    again = request(device, "both")
    final = events.wait_for(lambda e: e["run_id"] == again and e["type"] in ("completed", "failed"),
                            timeout=60, what=f"the sync after the crash to end {where}")
    # Then that sync succeeds
    assert (final["type"], final["error"]) == ("completed", None), where
    # And both sides hold exactly the 20,000 records, each once, nothing pending
    assert_identical(device.db, device.central, "customers", count=RECORDS)


def request(device: Device, direction: str) -> str:
    """Queue a sync of customers as ``craftsync sync`` does; returns its run id.

    (Not ``craftsync sync --wait`` itself: it follows any run of the entity on the
    server-wide channel, which on a shared Redis may be another test's; see test_cli_sync.)"""
    return request_sync(queue_broker(device.redis.url), device.redis.client, ["customers"],
                        direction=direction, policy="remote")
