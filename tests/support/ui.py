"""The UI server as a desktop session builds it, for tests: ``Session.ui_context`` of a real
``shell.session.Session`` on a real local SQLite store and PreferenceStore, serving the real
``web/``. What the session would spawn, the tests provide as real services: the broker is a
Redis database of the test's own (``tests.support.worker.redis_db``), the remote is the
reference server over HTTP (as the demo server the session would start), and the worker is a
dramatiq worker on that broker that takes none of the sync queues (the session runs with
``CRAFTSYNC_WORKERS=0``, as beside a ``craftsync worker`` of its own), so that what the UI
queued stays in the queue for the test to read. The connection monitor is the session's
own, started as the session starts it.

Requests go through a Flask test client to ``http://127.0.0.1:<PORT>`` (the UI's own
address), so that the Host check sees what the window would send.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import dramatiq
import redis
import waitress
from dramatiq.brokers.redis import RedisBroker
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from craftsync.contract.records import ENTITIES
from craftsync.shell.preferences import PreferenceStore
from craftsync.shell.remote_choice import Demo
from craftsync.shell.scheduler import ConnectionMonitor
from craftsync.shell.session import Session
from craftsync.shell.ui_server import UiContext, create_ui_app
from craftsync.worker.queue import queue_name
from craftsync.worker.settings import Settings
from craftsync.worker.store import LocalStore
from tests.support.api import API_KEY
from tests.support.process import free_port  # noqa: F401  (imported from here)
from tests.support.device import Device
from tests.support.worker import heartbeats, wait_until

#: The UI's port as far as the Host, Origin and cookie checks go (the test client needs no socket).
PORT: Final = 5555
BASE_URL: Final = f"http://127.0.0.1:{PORT}"
ORIGIN: Final = BASE_URL
SECRET: Final = "per-launch-secret-for-tests-0123456789abcdef"
#: A key a user saves in the settings (never the bundled server's).
USER_KEY: Final = "user-secret-key-XYZW7531"
#: The one queue of ``idle_worker``: no sync is ever queued on it.
IDLE_QUEUE: Final = "craftsync-tests-idle"
COOKIE: Final = f"craftsync_{PORT}"


class Served:
    """``app`` on a loopback port with waitress, in a thread, until ``stop``."""

    def __init__(self, app: Flask, port: int = 0, **options: Any) -> None:
        options.setdefault("threads", 4)
        self.server: Any = waitress.create_server(app, host="127.0.0.1", port=port, **options)
        self.effective_port: int = self.server.effective_port
        self.url = f"http://127.0.0.1:{self.effective_port}"
        self._thread = threading.Thread(target=self.server.run, name="waitress", daemon=True)
        self._thread.start()
        self._stopped = False

    def stop(self) -> None:
        """Close the listening socket and every connection from the server's own loop thread
        (closing them from here races with its select() and ends it with EBADF)."""
        if self._stopped:
            return
        self._stopped = True

        def shutdown() -> None:
            for channel in list(self.server._map.values()):
                channel.close()

        self.server.trigger.pull_trigger(shutdown)
        self._thread.join(timeout=5)
        self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)


@contextmanager
def serve(app: Flask, **options: Any) -> Iterator[Served]:
    """``app`` served over HTTP on a loopback port for the block."""
    served = Served(app, **options)
    try:
        yield served
    finally:
        served.stop()


def json_of(response: Any) -> Any:
    """The JSON body of a test-client answer; fails with the status and body when it is not JSON."""
    assert response.is_json, (response.status_code, response.data[:200])
    return response.get_json()


def manual_conflict(here: Device, other: Device) -> str:
    """A customer both desktops renamed; the UI's desktop synced under the manual policy."""
    other.sql("INSERT INTO customers (name, email) VALUES ('Ann', 'ann@example.com')")
    other.sync("customers")
    here.sync("customers")
    (record_id,) = here.live("customers")
    other.sql("UPDATE customers SET name = 'From other' WHERE id = ?", record_id)
    here.sql("UPDATE customers SET name = 'From here', phone = '42' WHERE id = ?", record_id)
    other.sync("customers")
    assert here.sync("customers", policy="manual").status == "conflicts"
    return record_id


class Page:
    """A Flask test client that talks to the UI at its own address (``base_url``)."""

    def __init__(self, app: Flask, base_url: str = BASE_URL, headers: dict[str, str] | None = None) -> None:
        self.client: FlaskClient = app.test_client()
        self.base_url = base_url
        self.headers = dict(headers or {})

    def open(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        kwargs.setdefault("base_url", self.base_url)
        kwargs["headers"] = {**self.headers, **kwargs.get("headers", {})}
        return self.client.open(path, method=method, **kwargs)

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.open("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestResponse:
        return self.open("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> TestResponse:
        return self.open("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestResponse:
        return self.open("DELETE", path, **kwargs)

    def login(self, secret: str = SECRET) -> TestResponse:
        """Open ``/?token=<secret>`` as the window does; the client keeps the cookie."""
        return self.get(f"/?token={secret}")


@dataclass
class Ui:
    """One UI server, built from a session as ``Session._start_ui`` builds it, and what is around it."""

    app: Flask
    ctx: UiContext
    session: Session
    database: Path
    prefs: PreferenceStore
    #: A client and a broker of the test's own on the session's Redis database (another
    #: requester, like the CLI, and the test's reads of the queue).
    redis: redis.Redis
    broker: RedisBroker
    monitor: ConnectionMonitor
    central_url: str
    worker: dramatiq.Worker | None

    def page(self, **kwargs: Any) -> Page:
        return Page(self.app, **kwargs)

    def logged_in(self) -> Page:
        page = self.page()
        assert page.login().status_code == 303
        return page

    def host_sql(self, statement: str, *args: Any) -> list[Any]:
        """Plain SQL on a connection of the host app's own."""
        import sqlite3

        conn = sqlite3.connect(self.database, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(statement, args).fetchall()
        finally:
            conn.close()

    def metadata(self, entity: str, record_id: str) -> dict[str, Any] | None:
        rows = self.host_sql("SELECT * FROM sync_metadata WHERE entity = ? AND record_id = ?", entity, record_id)
        return dict(rows[0]) if rows else None

    def queued(self, entity: str) -> list[dict[str, Any]]:
        """The dramatiq messages waiting on the entity's queue, decoded."""
        raw = self.redis.hvals(f"dramatiq:{queue_name(entity)}.msgs")
        return [json.loads(item) for item in raw]

    def queued_run(self, entity: str) -> dict[str, str]:
        """The coalescing record of the run waiting for ``entity`` ({} when none)."""
        found: dict[Any, Any] = self.redis.hgetall(f"craftsync:queued:{entity}")  # type: ignore[assignment]
        return {k.decode(): v.decode() for k, v in found.items()}

    def nothing_queued(self) -> bool:
        """No message and no waiting run on any entity's queue."""
        return all(self.queued(e) == [] and self.queued_run(e) == {} for e in ENTITIES)

    def connection_checked(self, state: str) -> dict[str, Any]:
        """The monitor's finding once it says ``state``: the session asks it to check at once
        after a settings change (``restart_workers``), as the running app does."""
        return dict(wait_until(lambda: self.monitor.state if self.monitor.state["state"] == state else None,
                               timeout=15, what=f"the connection monitor to find {state!r}"))

    def close(self) -> None:
        self.session.stop()  # stops the monitor, as at the end of a desktop session
        if self.worker is not None:
            self.worker.stop(timeout=5_000)
            self.worker.broker.close()
        self.session._dramatiq.close()  # the connections _start_broker opened (the session
        self.session._redis.close()  # leaves them to the process's exit)
        self.broker.close()
        self.redis.close()
        self.app.extensions["craftsync.redis"].close()


def idle_worker(redis_url: str) -> dramatiq.Worker:
    """A dramatiq worker on ``redis_url`` that consumes only IDLE_QUEUE, once its heartbeat is seen."""
    broker = RedisBroker(url=redis_url)
    broker.declare_queue(IDLE_QUEUE)
    worker = dramatiq.Worker(broker, queues={IDLE_QUEUE}, worker_threads=1, worker_timeout=100)  # stops in 0.1 s
    worker.start()
    client = redis.Redis.from_url(redis_url)
    try:
        wait_until(lambda: broker.broker_id.encode() in heartbeats(client), timeout=10,
                   what="the idle worker's heartbeat")
    finally:
        client.close()
    return worker


def make_ui(
    tmp_path: Path,
    redis_url: str,
    central_url: str,
    *,
    prefs_dir: Path | None = None,
    locked_url: str | None = None,
    port: int = PORT,
    worker: bool = True,
) -> Ui:
    """The UI of a ``Session`` as ``Session.start`` makes it, but for what it would spawn.

    The broker is ``redis_url`` (REDIS_URL: the session connects, starts no broker); the
    remote in force is, as in a session: REMOTE_API_URL (``locked_url``, with the test API key
    as REMOTE_API_KEY), else the URL saved in the preferences, else the demo server
    (``central_url`` with the test API key, standing for the one the session would start);
    ``worker`` starts ``idle_worker`` (without it, POST /api/sync answers that no worker runs).
    """
    database = tmp_path / "craftsync.db"
    database.parent.mkdir(parents=True, exist_ok=True)
    settings = Settings(database=database, redis_url=redis_url, remote_url=locked_url,
                        remote_key=API_KEY if locked_url else None, workers=0)
    session = Session(settings)
    session.secret = SECRET
    session.preferences = PreferenceStore(prefs_dir or tmp_path / "prefs")
    session.demo = None if locked_url else Demo(url=central_url, key=API_KEY)
    # Session.start's steps, those that spawn nothing here: the schema, the broker (given),
    # the workers (CRAFTSYNC_WORKERS=0: only the remote in use is noted), the UI's context,
    # and the connection monitor (the scheduler is left out: it would queue a sync at launch).
    LocalStore(database).close()
    session._start_broker()
    session._start_workers()
    ctx = session.ui_context(port=port)
    app = create_ui_app(ctx)
    session.monitor = ConnectionMonitor(session.remote, on_change=session._connection_changed).start()
    wait_until(lambda: session.monitor.state["state"] != "unknown", timeout=15,
               what="the connection monitor's first check")
    idle = idle_worker(redis_url) if worker else None
    return Ui(app, ctx, session, database, session.preferences, redis.Redis.from_url(redis_url),
              RedisBroker(url=redis_url), session.monitor, central_url, idle)
