"""The session's background duties (spec §8): syncing on launch, on schedule and on reconnect,
and watching the connection to the remote API.

The scheduler reads real preferences from a real PreferenceStore; its clock is a fake one
(the time source is a seam, not the thing under test). The connection monitor checks the
real reference server over HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from flask import Flask

from craftsync.shell.preferences import PreferenceStore
from craftsync.shell.scheduler import TICK_S, ConnectionMonitor, Scheduler
from tests.support.api import API_KEY
from tests.support.process import wait_until
from tests.support.sync import central_app
from tests.support.ui import Served, free_port, serve
from tests.support.worker import RedisDB, redis_db  # noqa: F401  (a fixture: a Redis database of our own)
from craftsync.worker.queue import ordered, request_sync
from craftsync.worker.remote import RemoteSettings

ALL = ["customers", "quotes", "orders"]


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Requests:
    """A request_sync that records what it was asked (the queue is tested in test_ui_sync_api)."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, entities: list[str], direction: str, policy: str) -> str:
        with self.lock:
            self.calls.append((list(entities), direction, policy))
            return f"run-{len(self.calls)}"


@pytest.fixture
def prefs(tmp_path: Path) -> PreferenceStore:
    return PreferenceStore(tmp_path / "prefs")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def requests() -> Requests:
    return Requests()


def _scheduler(prefs: PreferenceStore, requests: Callable[..., str], clock: FakeClock,
               pending: Callable[[], int] = lambda: 0) -> Scheduler:
    return Scheduler(prefs, requests, pending, clock=clock)


# -- sync on launch --------------------------------------------------------------------------


def test_syncs_everything_at_launch_by_default(prefs: PreferenceStore, requests: Requests, clock: FakeClock) -> None:
    scheduler = _scheduler(prefs, requests, clock).start(at_launch=True)
    scheduler.stop()
    assert requests.calls == [([], "both", "remote")]  # [] = all, with the default direction and policy


def test_the_launch_sync_follows_the_preferences(prefs: PreferenceStore, requests: Requests, clock: FakeClock) -> None:
    prefs.update({"default_direction": "pull", "conflict_policy": "manual"})
    _scheduler(prefs, requests, clock).start(at_launch=True).stop()
    assert requests.calls == [([], "pull", "manual")]


def test_no_sync_at_launch_when_the_user_turned_it_off(prefs: PreferenceStore, requests: Requests,
                                                       clock: FakeClock) -> None:
    prefs.update({"sync_on_launch": False})
    _scheduler(prefs, requests, clock).start(at_launch=True).stop()
    assert requests.calls == []
    prefs.update({"sync_on_launch": True})
    _scheduler(prefs, requests, clock).start(at_launch=False).stop()
    assert requests.calls == []


def test_the_launch_sync_lands_on_the_queue(prefs: PreferenceStore, clock: FakeClock,
                                            redis_db: RedisDB) -> None:  # noqa: F811
    # Given the scheduler wired to the real queue, as the session wires it
    broker = RedisBroker(url=redis_db.url)

    def request(entities: list[str], direction: str, policy: str) -> str:
        return request_sync(broker, redis_db.client, ordered(entities) or ALL, direction=direction, policy=policy)

    try:
        _scheduler(prefs, request, clock).start(at_launch=True).stop()
        # Then the customers run waits on its queue, with quotes and orders to follow
        (raw,) = redis_db.client.hvals("dramatiq:craftsync-customers.msgs")
        message = json.loads(raw)
        assert message["actor_name"] == "sync_customers"
        assert (message["kwargs"]["direction"], message["kwargs"]["policy"]) == ("both", "remote")
        assert redis_db.client.hget("craftsync:queued:customers", "then") == b'["quotes", "orders"]'
    finally:
        broker.close()


# -- auto-sync on an interval ----------------------------------------------------------------


def test_tick_syncs_only_once_the_interval_has_passed(prefs: PreferenceStore, requests: Requests,
                                                      clock: FakeClock) -> None:
    prefs.update({"interval_minutes": 5, "default_direction": "push"})
    scheduler = _scheduler(prefs, requests, clock)
    clock.advance(5 * 60 - 1)
    assert scheduler.tick() is False and requests.calls == []
    clock.advance(1)
    assert scheduler.tick() is True
    assert requests.calls == [([], "push", "remote")]
    # The next one is counted from this sync
    clock.advance(5 * 60 - 1)
    assert scheduler.tick() is False
    clock.advance(1)
    assert scheduler.tick() is True and len(requests.calls) == 2


def test_the_interval_counts_from_the_launch_sync(prefs: PreferenceStore, requests: Requests,
                                                  clock: FakeClock) -> None:
    prefs.update({"interval_minutes": 30})
    scheduler = _scheduler(prefs, requests, clock)
    clock.advance(20 * 60)
    scheduler.start(at_launch=True)
    scheduler.stop()
    clock.advance(29 * 60)
    assert scheduler.tick() is False
    clock.advance(60)
    assert scheduler.tick() is True
    assert len(requests.calls) == 2


def test_a_changed_interval_applies_at_the_next_tick(prefs: PreferenceStore, requests: Requests,
                                                     clock: FakeClock) -> None:
    scheduler = _scheduler(prefs, requests, clock)  # default: 30 minutes
    clock.advance(10 * 60)
    assert scheduler.tick() is False
    prefs.update({"interval_minutes": 10})
    assert scheduler.tick() is True


def test_auto_sync_off_never_syncs(prefs: PreferenceStore, requests: Requests, clock: FakeClock) -> None:
    prefs.update({"auto_sync": False, "interval_minutes": 5})
    scheduler = _scheduler(prefs, requests, clock)
    for _ in range(3):
        clock.advance(24 * 60 * 60)
        assert scheduler.tick() is False
    assert requests.calls == []
    # And turned back on, it syncs at once (the interval has long passed)
    prefs.update({"auto_sync": True})
    assert scheduler.tick() is True


def test_the_background_thread_ticks(prefs: PreferenceStore, requests: Requests, clock: FakeClock) -> None:
    prefs.update({"interval_minutes": 5})
    scheduler = _scheduler(prefs, requests, clock).start(at_launch=False)
    try:
        clock.advance(5 * 60)
        wait_until(lambda: len(requests.calls) == 1, timeout=TICK_S * 5, interval=0.02, what="the tick's sync")
        time.sleep(TICK_S * 1.5)
        assert len(requests.calls) == 1  # once per interval, not once per tick
    finally:
        scheduler.stop()


def test_a_sync_the_broker_refused_is_tried_again_soon(prefs: PreferenceStore, clock: FakeClock) -> None:
    # Given a broker that is away for the first request only
    calls: list[float] = []

    def request(entities: list[str], direction: str, policy: str) -> str:
        calls.append(clock())
        if len(calls) == 1:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return "run-2"

    scheduler = _scheduler(prefs, request, clock)  # interval 30 minutes
    clock.advance(30 * 60)
    scheduler.tick()  # refused, logged, not raised
    assert len(calls) == 1
    # When the scheduler keeps ticking every second for a minute
    for _ in range(60):
        clock.advance(TICK_S)
        scheduler.tick()
    # Then the sync that could not be queued was queued in that minute, not 30 minutes later
    assert len(calls) == 2, "the refused sync waits a whole interval before it is tried again"


# -- reconnect -------------------------------------------------------------------------------


def test_coming_back_online_with_pending_changes_syncs(prefs: PreferenceStore, requests: Requests,
                                                        clock: FakeClock) -> None:
    pending = {"n": 3}
    scheduler = _scheduler(prefs, requests, clock, pending=lambda: pending["n"])
    scheduler.connection_changed("offline", "online")
    assert requests.calls == [([], "both", "remote")]
    # Without pending changes there is nothing to push
    pending["n"] = 0
    scheduler.connection_changed("offline", "online")
    assert len(requests.calls) == 1
    # Going offline never syncs
    pending["n"] = 3
    scheduler.connection_changed("online", "offline")
    assert len(requests.calls) == 1


def test_a_reconnect_sync_restarts_the_interval(prefs: PreferenceStore, requests: Requests, clock: FakeClock) -> None:
    prefs.update({"interval_minutes": 5})
    scheduler = _scheduler(prefs, requests, clock, pending=lambda: 1)
    clock.advance(4 * 60)
    scheduler.connection_changed("offline", "online")
    clock.advance(60)
    assert scheduler.tick() is False
    clock.advance(4 * 60)
    assert scheduler.tick() is True


# -- the connection monitor against a real server --------------------------------------------


@pytest.fixture
def central(tmp_path: Path) -> Flask:
    return central_app(tmp_path)


class Changes:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, old: str, new: str) -> None:
        self.seen.append((old, new))


def test_monitor_online_then_offline_when_the_server_goes(central: Flask) -> None:
    changes = Changes()
    server = Served(central)
    url = f"http://127.0.0.1:{server.effective_port}/api"
    monitor = ConnectionMonitor(lambda: RemoteSettings(base_url=url, api_key=API_KEY), on_change=changes)
    assert monitor.state["state"] == "unknown"
    # When the server answers
    state = monitor.check()
    # Then online, with the time of the check and its latency
    assert state["state"] == "online" and state["detail"] is None
    assert isinstance(state["latency_ms"], int) and state["latency_ms"] >= 0
    assert state["checked_at"].endswith("Z")
    assert monitor.state == state
    assert changes.seen == [("unknown", "online")]
    # An unchanged state is not a change
    monitor.check()
    assert changes.seen == [("unknown", "online")]
    # When the server is gone
    server.stop()
    started = time.monotonic()
    state = monitor.check()
    # Then offline, saying why, promptly
    assert state["state"] == "offline"
    assert state["detail"] and str(server.effective_port) in state["detail"]
    assert time.monotonic() - started < 10
    assert changes.seen == [("unknown", "online"), ("online", "offline")]


def test_monitor_without_a_remote_is_unconfigured() -> None:
    changes = Changes()
    state = ConnectionMonitor(lambda: None, on_change=changes).check()
    assert state["state"] == "unconfigured" and state["detail"]
    assert changes.seen == [("unknown", "unconfigured")]


def test_a_wrong_key_makes_the_connection_check_say_the_key_is_refused_not_online(central: Flask) -> None:
    # Given a server that answers its health check to anyone, when the key is wrong
    with serve(central) as server:
        url = f"http://127.0.0.1:{server.effective_port}/api"
        state = ConnectionMonitor(lambda: RemoteSettings(base_url=url, api_key="wrong-key-0123456789")).check()
    # Then the check reports the key, in words, instead of "online"
    assert state["state"] == "refused"
    assert state["detail"] == f"The server at {url} refused the API key: enter the right key in Settings."


def test_an_address_that_is_no_api_is_reported_with_a_hint_to_add_api(central: Flask) -> None:
    # Given the server's root instead of its /api address
    with serve(central) as server:
        root = f"http://127.0.0.1:{server.effective_port}"
        state = ConnectionMonitor(lambda: RemoteSettings(base_url=root, api_key="k" * 20)).check()
    assert state["state"] == "refused"
    assert state["detail"] == f"There is no CraftSync API at {root}: check the address; it usually ends in /api, e.g. {root}/api."


def test_a_closed_port_is_offline_with_a_sentence_not_an_errno(central: Flask) -> None:
    url = f"http://127.0.0.1:{free_port()}/api"
    state = ConnectionMonitor(lambda: RemoteSettings(base_url=url, api_key="k" * 20)).check()
    assert state["state"] == "offline"
    assert state["detail"] == f"Nothing answers at {url}: check the address and that the server is running."
    assert "Errno" not in state["detail"]


def test_monitor_thread_notices_when_asked_to_check_soon(central: Flask) -> None:
    changes = Changes()
    server = Served(central)
    url = f"http://127.0.0.1:{server.effective_port}/api"
    monitor = ConnectionMonitor(lambda: RemoteSettings(base_url=url, api_key=API_KEY), interval_s=60,
                                on_change=changes).start()
    try:
        wait_until(lambda: monitor.state["state"] == "online", timeout=5, interval=0.02, what="the first check")
        server.stop()
        monitor.check_soon()
        wait_until(lambda: monitor.state["state"] == "offline", timeout=5, interval=0.02,
                   what="the check asked for soon")
        assert changes.seen == [("unknown", "online"), ("online", "offline")]
    finally:
        monitor.stop()
        server.stop()


def test_connection_returning_with_pending_changes_triggers_a_sync(central: Flask, prefs: PreferenceStore,
                                                                   requests: Requests, clock: FakeClock) -> None:
    # Given the monitor wired to the scheduler as the session wires them, and changes waiting
    port = free_port()
    scheduler = _scheduler(prefs, requests, clock, pending=lambda: 2)
    monitor = ConnectionMonitor(lambda: RemoteSettings(base_url=f"http://127.0.0.1:{port}/api", api_key=API_KEY),
                                on_change=scheduler.connection_changed)
    # While the server is down: offline, nothing queued
    assert monitor.check()["state"] == "offline"
    assert requests.calls == []
    # When the server comes up on that address
    server = Served(central, port=port)
    try:
        assert monitor.check()["state"] == "online"
    finally:
        server.stop()
    # Then the waiting changes are synced
    assert requests.calls == [([], "both", "remote")]


@pytest.fixture(autouse=True)
def _no_thread_left(request: pytest.FixtureRequest) -> Iterator[None]:
    before = {t.name for t in threading.enumerate()}
    yield
    wait_until(lambda: not ({t.name for t in threading.enumerate() if t.is_alive()} - before)
               & {"scheduler", "connection-monitor"}, timeout=12, interval=0.02,
               what="the scheduler's and the monitor's threads to end")
