"""The UI server as a desktop session wires it, for tests: a real local SQLite store, a real
PreferenceStore, the real reference server over HTTP as the remote, a Redis database of
the test's own (``tests.support.worker.redis_db``) with dramatiq's RedisBroker on it, and
a real ConnectionMonitor.

Requests go through a Flask test client to ``http://127.0.0.1:<PORT>`` (the UI's own
address), so that the Host check sees what the window would send.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import redis
import waitress
from dramatiq.brokers.redis import RedisBroker
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from craftsync.contract.records import ENTITIES
from craftsync.shell.preferences import PreferenceStore
from craftsync.shell.remote_choice import Demo, RemoteChoice, choose_remote
from craftsync.shell.scheduler import ConnectionMonitor
from craftsync.shell.ui_server import UiContext, create_ui_app
from tests.support.api import API_KEY
from tests.support.process import free_port  # noqa: F401  (imported from here)
from tests.support.sync import Device
from craftsync.worker.queue import ordered, queue_name, request_sync
from craftsync.worker.remote import RemoteSettings
from craftsync.worker.store import LocalStore

#: The UI's port as far as the Host, Origin and cookie checks go (the test client needs no socket).
PORT: Final = 5555
BASE_URL: Final = f"http://127.0.0.1:{PORT}"
ORIGIN: Final = BASE_URL
SECRET: Final = "per-launch-secret-for-tests-0123456789abcdef"
#: A key a user saves in the settings (never the bundled server's).
USER_KEY: Final = "user-secret-key-XYZW7531"
COOKIE: Final = f"craftsync_{PORT}"
#: A small stand-in for web/ (the real page is not what these tests are about).
WEB_FILES: Final = {
    "index.html": '<!doctype html><html><head><script type="module" src="/static/js/app.js"></script></head>'
                  "<body>CraftSync</body></html>",
    "js/app.js": "export const ready = true;\n",
    "css/app.css": "body { margin: 0; }\n",
}


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


def write_web(directory: Path) -> Path:
    for name, text in WEB_FILES.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


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
    """One UI server and everything around it."""

    app: Flask
    ctx: UiContext
    database: Path
    prefs: PreferenceStore
    redis: redis.Redis
    broker: RedisBroker
    monitor: ConnectionMonitor
    central_url: str
    requests: list[tuple[list[str], str, str]] = field(default_factory=list)

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

    def close(self) -> None:
        self.broker.close()
        self.redis.close()
        self.app.extensions["craftsync.redis"].close()


def make_ui(
    tmp_path: Path,
    redis_url: str,
    central_url: str,
    *,
    prefs_dir: Path | None = None,
    locked_url: str | None = None,
    port: int = PORT,
) -> Ui:
    """A UI server wired as ``shell.session.Session._start_ui`` wires it.

    The remote in force is, as in a session: REMOTE_API_URL (``locked_url``), else the URL
    saved in the preferences, else the bundled server (``central_url``, whose key is the
    test API key unless one is saved).
    """
    database = tmp_path / "craftsync.db"
    database.parent.mkdir(parents=True, exist_ok=True)
    LocalStore(database).close()  # the session creates the schema before the UI starts
    prefs = PreferenceStore(prefs_dir or tmp_path / "prefs")

    demo = Demo(url=central_url, key=API_KEY)

    def choice() -> RemoteChoice:
        return choose_remote(env_url=locked_url, env_key=None, prefs=prefs.load(), saved_key=prefs.api_key(),
                             demo=demo)

    def remote() -> RemoteSettings | None:
        chosen = choice()
        return RemoteSettings(base_url=chosen.url, api_key=chosen.key) if chosen.url and chosen.key else None

    client = redis.Redis.from_url(redis_url)
    broker = RedisBroker(url=redis_url)
    monitor = ConnectionMonitor(remote)
    calls: list[tuple[list[str], str, str]] = []

    def request(entities: list[str], direction: str, policy: str, request_id: str | None = None) -> str:
        calls.append((list(entities), direction, policy))
        chosen = ordered(entities) or list(ENTITIES)
        return request_sync(broker, client, chosen, direction=direction, policy=policy,
                            requests=[request_id] if request_id else None)

    ctx = UiContext(
        secret=SECRET,
        database=database,
        redis_url=redis_url,
        preferences=prefs,
        remote=remote,
        remote_url_locked=locked_url is not None,
        connection=monitor.check,
        request_sync=request,
        choice=choice,
        port=port,
    )
    app = create_ui_app(ctx)
    return Ui(app, ctx, database, prefs, client, broker, monitor, central_url, calls)
