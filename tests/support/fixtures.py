"""The suite's fixtures, registered for every test module from ``tests/conftest.py``.

A test names what it needs and gets it; nothing here is autouse.

- ``redis_db``, ``private_redis``, ``events``: Redis (``tests.support.worker``).
- ``central``: a ``craftsync server`` process (``tests.support.worker``); ``device``: a desktop
  syncing with it through ``craftsync worker`` processes (``tests.support.device``, below).
- ``chromium``, ``display``: a browser and an X display for the UI (``tests.support.e2e``).
- ``remote_server``, ``second_redis_db``, ``desktop``, ``open_ui``: the end-to-end tests'
  reference server subprocess, a second desktop's Redis database, ``craftsync run --browser``
  and Chromium pages on it (below).
- ``reference_app``, ``reference_url``, ``ui``, ``page``, ``here``, ``other``: the UI server
  of a session (``tests.support.ui.make_ui``), the reference server it syncs with, and desktops
  syncing in-process (below).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.support.e2e import chromium, display  # noqa: F401  (registered here)
from tests.support.e2e import DesktopRun, RemoteServer, UiPage, another_redis_db, run_env
from tests.support.api import make_app
from tests.support.device import Device
from tests.support.sync import central_app
from tests.support.ui import Page, Ui, make_ui, serve
from tests.support.worker import Central, RedisDB, central, events, private_redis, redis_db  # noqa: F401  (registered here)


@pytest.fixture
def device(tmp_path: Path, redis_db: RedisDB, central: Central) -> Iterator[Device]:  # noqa: F811
    """A desktop syncing with ``central`` through ``craftsync worker`` processes on the test's Redis database."""
    one = Device.with_workers(tmp_path, central, redis_db)
    yield one
    one.close()


@pytest.fixture
def backend_app(database_url: str) -> Iterator[Flask]:
    """The reference server's app on a fresh database of each backend (``database_url``)."""
    app = make_app(database_url)
    yield app
    app.extensions["craftsync.engine"].dispose()


@pytest.fixture
def reference_app(tmp_path: Path) -> Flask:
    """The reference server's app on a fresh SQLite database, for in-process and served use."""
    return central_app(tmp_path)


@pytest.fixture
def reference_url(reference_app: Flask) -> Iterator[str]:
    """``reference_app`` over HTTP on a loopback port: its API root."""
    with serve(reference_app) as server:
        yield f"http://127.0.0.1:{server.effective_port}/api"


@pytest.fixture
def ui(tmp_path: Path, redis_db: RedisDB, reference_url: str) -> Iterator[Ui]:  # noqa: F811
    """The UI server of a session on the test's Redis database, syncing with ``reference_url``."""
    one = make_ui(tmp_path, redis_db.url, reference_url)
    yield one
    one.close()


@pytest.fixture
def page(ui: Ui) -> Page:
    """The window's page: opened with the launch token, holding the cookie."""
    return ui.logged_in()


@pytest.fixture
def here(ui: Ui, reference_app: Flask) -> Iterator[Device]:
    """A sync engine on the UI's own database (as a worker process would run it)."""
    device = Device.in_process(ui.database, reference_app)
    yield device
    device.close()


@pytest.fixture
def other(tmp_path: Path, reference_app: Flask) -> Iterator[Device]:
    """Another desktop syncing with the same reference server."""
    device = Device.in_process(tmp_path / "other.db", reference_app)
    yield device
    device.close()


@pytest.fixture
def devices(tmp_path: Path, reference_app: Flask) -> Iterator[tuple[Device, Device]]:
    """Two desktops syncing in-process with the same reference server."""
    a, b = Device.in_process(tmp_path / "a.db", reference_app), Device.in_process(tmp_path / "b.db", reference_app)
    yield a, b
    a.close()
    b.close()


# -- end to end ------------------------------------------------------------------------------


@pytest.fixture
def remote_server(tmp_path: Path) -> Iterator[RemoteServer]:
    """The reference server as a subprocess, on a port and database that survive a restart."""
    server = RemoteServer(tmp_path, key=f"e2e-{secrets.token_hex(12)}")
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def second_redis_db() -> Iterator[RedisDB]:
    """Another database number on the same Redis server, for a second desktop."""
    with another_redis_db() as db:
        yield db


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[Callable[..., DesktopRun]]:
    """Start ``craftsync run --browser`` in a home of the test's; every run is stopped at teardown."""
    runs: list[DesktopRun] = []

    def start(home: Path, **variables: str) -> DesktopRun:
        run = DesktopRun(home, run_env(home, **variables), log=home.parent / f"run-{len(runs)}.log")
        runs.append(run)
        return run.start()

    yield start
    for run in runs:
        run.stop()


@pytest.fixture
def open_ui(chromium: Any) -> Iterator[Callable[..., UiPage]]:  # noqa: F811
    """Open Chromium pages on a desktop run; each is closed at teardown."""
    pages: list[UiPage] = []

    def open_page(run: DesktopRun, **options: Any) -> UiPage:
        page = UiPage(chromium, run, **options)
        pages.append(page)
        return page.open()

    yield open_page
    for page in pages:
        page.close()
