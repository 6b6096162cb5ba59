"""A worker SIGKILLed at any instant of a sync loses nothing and duplicates nothing (spec §6.4).

Real worker processes on real Redis, against the reference server over HTTP. Each case
starts a 20,000-record push (rows the host app inserted) or pull (records another device
put on the server), kills the worker at a random moment of the run, starts a new worker and
requests one more sync. The kill must land mid-run: the run is still 'running' in the
local ``sync_runs`` and short of 20,000 records when the worker dies. Then both sides must
hold the same 20,000 records, nothing left pending, and the server must show no re-sent
work: each record was created once, so its stored ``version`` is 1 and the change feed
holds 20,000 entries (``seq``), and the device knows version 1 of each. Every value is read
raw from the databases. Set ``CRAFTSYNC_CRASH_SEED`` to replay a run.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.support.device import Device, assert_identical
from tests.support.worker import (
    EventLog,
    customers_for_server,
    queue_broker,
)
from craftsync.worker.queue import request_sync

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]

RECORDS = 20_000
#: Records per progress event (a pushed batch, a pulled page) and about how long one takes
#: here: the kill comes after a random progress event of the first half of the run, at a
#: random moment of the next step, so that half the run is still to go when it lands (the
#: events reach the test a little late, more so on a busy machine).
STEP = {"push": 1000, "pull": 5000}
STEP_TIME_S = {"push": 0.07, "pull": 0.08}
SEED = int(os.environ.get("CRAFTSYNC_CRASH_SEED") or time.time_ns() % 1_000_000)
CASES = [(direction, attempt) for direction in ("push", "pull") for attempt in range(5)]


@pytest.mark.parametrize(("direction", "attempt"), CASES, ids=[f"{d}-{a}" for d, a in CASES])
def test_worker_killed_mid_sync_loses_and_duplicates_nothing(
    device: Device, events: EventLog, direction: str, attempt: int
) -> None:
    rng = random.Random(f"{SEED}-{direction}-{attempt}")
    after = rng.randrange(0, RECORDS // 2, STEP[direction])
    delay = rng.uniform(0, STEP_TIME_S[direction])
    where = f"(seed {SEED}: kill {delay:.2f} s after {after} records)"
    # Given 20,000 customers on one side only: the host app's table, or the server
    if direction == "push":
        device.insert_customers(RECORDS)
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
    # Then the kill landed mid-run: the run never finished, short of all the records
    killed = device.run(crashed)
    assert killed is not None and killed["status"] == "running", f"{killed} {where}"
    assert last["type"] in ("started", "progress") and last["done"] < RECORDS, f"{last} {where}"
    # And a new worker runs one more sync
    device.start_worker()
    again = request(device, "both")
    final = events.wait_for(lambda e: e["run_id"] == again and e["type"] in ("completed", "failed"),
                            timeout=60, what=f"the sync after the crash to end {where}")
    # Then that sync succeeds
    assert (final["type"], final["error"]) == ("completed", None), where
    # And both sides hold exactly the 20,000 records, each tracked once, nothing pending
    assert_identical(device, "customers", count=RECORDS)
    # And nothing was sent twice: one change per record on the server, the version the device knows
    versions, feed, counter = device.central.bookkeeping("customers")
    bumped = {i: v for i, v in versions.items() if v != 1}
    assert not bumped, f"{len(bumped)} records changed more than once, e.g. {next(iter(bumped.items()))} {where}"
    assert (len(feed), len(set(feed)), counter) == (RECORDS, RECORDS, RECORDS), f"change feed {where}"
    assert device.known_versions("customers") == versions, f"the device's known versions {where}"


def request(device: Device, direction: str) -> str:
    """Queue a sync of customers as ``craftsync sync`` does; returns its run id.

    (Not ``craftsync sync --wait`` itself: it follows any run of the entity on the
    server-wide channel, which on a shared Redis may be another test's; see test_cli_sync.)"""
    return request_sync(queue_broker(device.redis.url), device.redis.client, ["customers"],
                        direction=direction, policy="remote")
