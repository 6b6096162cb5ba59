"""Sync requests through Redis to real ``craftsync worker`` processes (spec §6.5, §6.6, §7).

Real services only: Redis on loopback (a database of each test's own), the reference server
over HTTP, workers as separate processes that a test may SIGKILL like a crash would.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.support.device import Device, assert_identical
from tests.support.worker import (
    EventLog,
    Service,
    queue_broker,
)
from tests.support.process import wait_until
from craftsync.worker.queue import LOCK_TTL_S, request_sync


pytestmark = [pytest.mark.redis, pytest.mark.timeout(180)]

#: Longest a run of a few thousand records may take here (it takes about a second).
RUN_TIMEOUT_S = 60


def request(device: Device, entities: list[str], direction: str = "both", policy: str = "remote") -> str:
    """Queue a sync as ``craftsync sync`` does; returns the run id of the first entity's run."""
    return request_sync(queue_broker(device.redis.url), device.redis.client, entities,
                        direction=direction, policy=policy)


def ended(run_id: str) -> Any:
    return lambda e: e["run_id"] == run_id and e["type"] in ("completed", "failed")


def of_run(log: EventLog, run_id: str) -> list[dict[str, Any]]:
    return log.of({run_id})


def push_under_way(device: Device, events: EventLog) -> tuple[Service, str]:
    """A worker and the push of 20,000 customers (inserted by the host app) it has begun: the
    worker and the run id, once the run's first progress event has arrived."""
    device.insert_customers(20_000)
    worker = device.start_worker()
    run_id = request(device, ["customers"], direction="push")
    events.wait_for(lambda e: e["run_id"] == run_id and e["type"] == "progress" and e["done"] > 0,
                    timeout=RUN_TIMEOUT_S, what="the push to be under way")
    return worker, run_id


def test_push_publishes_started_progress_completed_with_growing_counts(device: Device, events: EventLog) -> None:
    # Given 3,000 customers the host app inserted offline, and a worker
    device.insert_customers(3000)
    device.start_worker()
    # When a push of customers is requested
    run_id = request(device, ["customers"], direction="push")
    final = events.wait_for(ended(run_id), timeout=RUN_TIMEOUT_S, what="the push to end")
    # Then the run's events are started, progress..., completed, with done never going back
    seen = of_run(events, run_id)
    kinds = [e["type"] for e in seen]
    assert kinds[0] == "started" and kinds[-1] == "completed", kinds
    assert set(kinds[1:-1]) == {"progress"}, kinds
    dones = [e["done"] for e in seen]
    assert dones == sorted(dones), dones
    assert all(e["entity"] == "customers" and e["direction"] == "push" for e in seen)
    # And the last one counts every record
    assert (final["done"], final["total"], final["pushed"], final["error"]) == (3000, 3000, 3000, None)
    # And the run is in the local history as completed
    runs = device.sql("SELECT status, pushed, pulled FROM sync_runs WHERE run_id = ?", run_id)
    assert [tuple(r) for r in runs] == [("completed", 3000, 0)]
    assert_identical(device, "customers", count=3000)


def test_one_run_per_entity_across_two_workers_and_waiting_requests_coalesce(
    device: Device, events: EventLog
) -> None:
    # Given two worker processes and a long push of customers already running
    device.insert_customers(10_000)
    device.start_worker()
    device.start_worker()
    first = request(device, ["customers"])
    events.wait_for(lambda e: e["run_id"] == first and e["type"] == "started", timeout=RUN_TIMEOUT_S,
                    what="the first run to start")
    # When five more requests for customers come in quickly
    more = [request(device, ["customers"]) for _ in range(5)]
    # Then they all join one waiting run instead of queueing five
    assert len(set(more)) == 1, more
    waiting = more[0]
    assert waiting != first
    events.wait_for(ended(waiting), timeout=RUN_TIMEOUT_S, what="the waiting run to end")
    time.sleep(1.5)  # time enough for any extra run to show itself
    # And the waiting run started only after the first one had ended, and each ran once
    runs = device.sql("SELECT run_id, status FROM sync_runs WHERE entity = 'customers' ORDER BY started_at")
    assert [tuple(r) for r in runs] == [(first, "completed"), (waiting, "completed")]
    seen = [(e["type"], e["run_id"]) for e in events.of({first, waiting}) if e["type"] != "progress"]
    assert seen == [("started", first), ("completed", first), ("started", waiting), ("completed", waiting)], seen
    assert_identical(device, "customers", count=10_000)
    # And a worker that found the entity busy waited its turn quietly: no error, no traceback
    for worker in device.workers:
        log = worker.log.read_text()
        assert "Traceback" not in log and "unhandled exception" not in log, worker.tail()


def test_sync_all_runs_customers_then_quotes_then_orders_so_references_resolve(
    device: Device, events: EventLog
) -> None:
    # Given an offline session: a new customer, a quote for them and an order from that quote
    device.sql("INSERT INTO customers (name, email) VALUES ('Ann Archer', 'ann@example.com')")
    customer_id = device.sql("SELECT id FROM customers")[0]["id"]
    device.sql("INSERT INTO quotes (customer_id, project_name, total_amount) VALUES (?, 'Oak table', '1200.50')",
               customer_id)
    quote_id = device.sql("SELECT id FROM quotes")[0]["id"]
    device.sql("INSERT INTO orders (quote_id, customer_id, total_amount) VALUES (?, ?, '1200.50')",
               quote_id, customer_id)
    order_id = device.sql("SELECT id FROM orders")[0]["id"]
    device.start_worker()
    # When "all" is requested
    first = request(device, ["customers", "quotes", "orders"])

    def ours(e: dict[str, Any]) -> bool:  # the chain's later run ids are the workers' to choose
        return e["entity"] == "orders" and e["type"] in ("completed", "failed") and bool(
            device.sql("SELECT 1 FROM sync_runs WHERE run_id = ?", e["run_id"]))

    events.wait_for(ours, timeout=RUN_TIMEOUT_S, what="the orders run to end")
    # Then the runs went customers, then quotes, then orders, one after the other
    run_ids = {r["run_id"] for r in device.runs()}
    assert first in run_ids and len(run_ids) == 3
    seen = [(e["entity"], e["type"]) for e in events.of(run_ids) if e["type"] != "progress"]
    assert seen == [("customers", "started"), ("customers", "completed"), ("quotes", "started"),
                    ("quotes", "completed"), ("orders", "started"), ("orders", "completed")], seen
    # And the server accepted the quote and the order with their references
    assert [tuple(r) for r in device.sql("SELECT entity, status, rejected FROM sync_runs ORDER BY started_at")] == [
        ("customers", "completed", 0), ("quotes", "completed", 0), ("orders", "completed", 0)]
    assert device.central.get("quotes", quote_id)["customer_id"] == customer_id
    assert device.central.get("orders", order_id)["quote_id"] == quote_id
    for entity in ("customers", "quotes", "orders"):
        assert_identical(device, entity, count=1)


def test_killed_workers_entity_lock_lapses_within_its_ttl(device: Device, events: EventLog) -> None:
    # Given a worker in the middle of a large push
    doomed, crashed = push_under_way(device, events)
    # When the worker is SIGKILLed (its lock is not released) and a new worker starts
    doomed.kill()
    killed_at = time.monotonic()
    assert not [e for e in of_run(events, crashed) if e["type"] in ("completed", "failed")], "killed too late"
    device.start_worker()
    # Then a new request runs as soon as the lock lapses, not after dramatiq's heartbeat timeout
    retry = request(device, ["customers"], direction="push")
    assert retry != crashed
    events.wait_for(lambda e: e["run_id"] == retry and e["type"] == "started", timeout=LOCK_TTL_S + 30,
                    what="the new run to start")
    started_after = time.monotonic() - killed_at
    print(f"the new run started {started_after:.1f} s after the kill")
    # (dramatiq hands a dead worker's messages on only after its heartbeat timeout, 15 s here,
    # and then only when queue maintenance happens to run: the new request must not need that)
    assert started_after < LOCK_TTL_S + 4, started_after
    final = events.wait_for(ended(retry), timeout=RUN_TIMEOUT_S, what="the new run to end")
    # And it completes the push: both sides hold the 20,000 customers, nothing left pending
    assert final["type"] == "completed", final
    assert_identical(device, "customers", count=20_000)


def held_by_a_worker(device: Device, run_id: str) -> bool:
    """Whether every dramatiq message of ``run_id`` is taken by a worker (in its acks), none queued."""
    client = device.redis.client
    taken = set().union(*(client.smembers(key) for key in client.scan_iter("dramatiq:__acks__.*")))
    ours = [message_id for key in client.scan_iter("dramatiq:*.msgs")
            for message_id, body in client.hgetall(key).items()
            if json.loads(body)["kwargs"].get("run_id") == run_id]
    return bool(ours) and set(ours) <= taken


def test_request_waiting_behind_a_killed_run_is_not_stranded(device: Device, events: EventLog) -> None:
    # Given a worker in the middle of a large push, and a second request waiting for it, whose
    # message the worker holds (it retries it while the entity is busy)
    doomed, _ = push_under_way(device, events)
    waiting = request(device, ["customers"], direction="push")
    wait_until(lambda: held_by_a_worker(device, waiting), timeout=10, interval=0.01,
               what="the worker to hold the waiting run's message")
    # When the worker is SIGKILLed and a new worker starts
    doomed.kill()
    killed_at = time.monotonic()
    device.start_worker()
    # Then a new request (which joins the waiting run) still completes soon after the lock lapses
    again = request(device, ["customers"], direction="push")
    final = events.wait_for(ended(again), timeout=LOCK_TTL_S + 20,
                            what=f"run {again} to end (the waiting run was {waiting})")
    assert final["type"] == "completed", final
    assert time.monotonic() - killed_at < LOCK_TTL_S + 20
    assert_identical(device, "customers", count=20_000)
