"""The desktop app as a person meets it, for the end-to-end tests: ``craftsync run`` and
``craftsync server`` as real subprocesses, and Debian's Chromium (through Playwright) or a real
pywebview window under Xvfb on the UI.

Every process is started in a session of its own and stopped at teardown (SIGTERM, then
SIGKILL for whatever is left of it and of its children); every wait has a timeout. Each test
gets its own ``CRAFTSYNC_HOME`` (settings, API key file, runtime file, local database), so
that no ``craftsync run`` of the developer's is found or touched.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import psutil
import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.support import process as process_helpers
from tests.support.api import new_id
from tests.conftest import service_missing
from tests.support.process import (
    Service,
    kill_pids,
    living,
    start_server,
    stop_group,
    tail,
    wait_until,
)
from tests.support.worker import (
    CRAFTSYNC,
    ROOT,
    RedisDB,
    ServerReads,
    clean_env,
    free_port,
    own_redis_db,
)

#: Debian's Chromium; Playwright's own browser downloads are not used (nor reachable).
CHROMIUM: Final = Path(os.environ.get("CRAFTSYNC_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS: Final = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
XVFB: Final = Path(os.environ.get("CRAFTSYNC_TEST_XVFB", "/usr/bin/Xvfb"))
#: The window's default size (shell/window.py) and the smallest one the UI is laid out for.
VIEWPORT: Final = {"width": 1280, "height": 820}
SMALL_VIEWPORT: Final = {"width": 1024, "height": 700}
SCREENSHOTS: Final = ROOT / "docs" / "screenshots"
#: Seconds ``craftsync run`` gets to print its ``UI:`` line (broker, demo server, workers, UI).
RUN_START_TIMEOUT_S: Final = 90.0
#: Seconds a SIGTERMed ``craftsync run`` gets to stop everything it started.
RUN_STOP_TIMEOUT_S: Final = 30.0
#: Keys of a test never reach an OS keyring of the developer's: the 0600 file in CRAFTSYNC_HOME.
NO_KEYRING: Final = "keyring.backends.fail.Keyring"


def require_chromium() -> None:
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        service_missing(f"Chromium is not installed at {CHROMIUM} (Debian package 'chromium')")


def require_xvfb() -> None:
    if not (XVFB.exists() and os.access(XVFB, os.X_OK)):
        service_missing(f"Xvfb is not installed at {XVFB} (Debian package 'xvfb')")


def run_env(home: Path, **variables: str) -> dict[str, str]:
    """The environment of a ``craftsync run``: clean, its own home, no real browser, no keyring."""
    env = clean_env(home, BROWSER="true", PYTHON_KEYRING_BACKEND=NO_KEYRING, **variables)
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        if name not in variables:
            env.pop(name, None)
    return env


def user_env(home: Path, **variables: str) -> dict[str, str]:
    """A new user's environment: ours without any CraftSync variable (not even
    ``CRAFTSYNC_HOME``), HOME as given, no XDG overrides (so the platform's data dir under
    HOME is used), no display, and no browser for ``--browser`` to start (the test opens its own)."""
    env = {k: v for k, v in os.environ.items()
           if k not in process_helpers.OWN_VARIABLES and not k.startswith(("XDG_", "CRAFTSYNC"))}
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        env.pop(name, None)
    env.update(HOME=str(home), BROWSER="true", PYTHON_KEYRING_BACKEND=NO_KEYRING, PYTHONUNBUFFERED="1", **variables)
    return env


def remote_env(redis_db: RedisDB, server: RemoteServer) -> dict[str, str]:
    """The variables that point a desktop at ``redis_db`` and ``server`` (its URL and key)."""
    return {"REDIS_URL": redis_db.url, "REMOTE_API_URL": server.url, "REMOTE_API_KEY": server.key}


def write_preferences(home: Path, **prefs: Any) -> None:
    """Preferences as the UI saves them (``settings.json`` in the user data dir)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "settings.json").write_text(json.dumps(prefs))


def another_redis_db() -> AbstractContextManager[RedisDB]:
    """One more Redis database of the test's own on the same server, claimed as
    ``tests.support.worker.redis_db`` claims its one (for tests of two desktops)."""
    return own_redis_db()


# -- the remote API --------------------------------------------------------------------------


class RemoteServer(ServerReads):
    """``craftsync server`` on a fixed loopback port, with a SQLite central database that
    survives a stop, so that it can be stopped and started again on the same port and data."""

    def __init__(self, tmp: Path, key: str, *, name: str = "central") -> None:
        self.port = free_port()
        self.key = key
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.home = tmp / f"{name}-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.database = tmp / f"{name}.db"
        self.log = tmp / f"{name}.log"
        self.service: Service | None = None
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    def start(self, *, timeout: float = 30) -> RemoteServer:
        env = clean_env(self.home, DATABASE_URL=f"sqlite:///{self.database}", API_KEYS=self.key,
                        RATE_LIMIT="1000000/minute")
        self.service = start_server(env, port=self.port, log=self.log, cwd=self.home, timeout=timeout,
                                    fail=pytest.fail)
        return self

    def stop(self) -> None:
        if self.service is None:
            return
        self.service.stop(timeout=10)
        self.service = None

    def close(self) -> None:
        self.stop()
        self.http.close()

    # -- data, over HTTP as another device would send it ------------------------------------

    def seed_customers(self, count: int, *, batch: int = 1000, prefix: str = "Seeded") -> list[str]:
        """``count`` new customers, POSTed in batches; their ids."""
        ids: list[str] = []
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for start in range(0, count, batch):
            records = [{"id": new_id(), "name": f"{prefix} {i:05d}" if count > 1 else prefix, "company": "Seed & Co",
                        "email": f"seed{i}@example.com", "phone": f"+44 113 {i:06d}", "city": "Leeds",
                        "created_at": now, "updated_at": now}
                       for i in range(start, min(start + batch, count))]
            response = self.http.post("/customers", json={"records": records})
            assert response.status_code == 200, response.text[:500]
            statuses = {r["status"] for r in response.json()["results"]}
            assert statuses == {"created"}, statuses
            ids.extend(r["id"] for r in records)
        return ids


# -- craftsync run ---------------------------------------------------------------------------


class DesktopRun:
    """``craftsync run`` as a subprocess: its output is collected by a thread (and written to
    ``log``), ``start`` returns once it printed ``UI: <url>``."""

    def __init__(self, home: Path, env: dict[str, str], *, log: Path, browser: bool = True,
                 argv: list[str] | None = None) -> None:
        self.home = home
        self.env = env
        self.log = log
        self.argv = argv or [*CRAFTSYNC, "run", *(["--browser"] if browser else [])]
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.launch_url = ""
        self.family: set[int] = set()  # every pid seen in the run's process tree
        self.returncode: int | None = None
        #: Processes of the run's tree still alive after it ended (killed then by ``stop``).
        self.survivors: list[int] = []

    @property
    def base_url(self) -> str:
        return self.launch_url.split("?", 1)[0].rstrip("/")

    def start(self, *, timeout: float = RUN_START_TIMEOUT_S) -> DesktopRun:
        self.home.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.home, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     errors="replace", start_new_session=True)
        threading.Thread(target=self._read, name="craftsync-run-output", daemon=True).start()

        def ui_line() -> str:
            try:
                line = self._lines.get(timeout=0.5)
            except queue.Empty:
                return ""
            if line is None:
                self.proc.wait(10)
                pytest.fail(f"'craftsync run' exited with {self.proc.returncode} before its UI line:\n"
                            f"{self.output()[-3000:]}")
            match = re.match(r"UI: (http://127\.0\.0\.1:\d+/\?token=\S+)$", line.strip())
            return match.group(1) if match else ""

        self.launch_url = wait_until(ui_line, timeout=timeout, interval=0, what="'craftsync run' to print its UI line",
                                     fail=lambda message: pytest.fail(f"{message}:\n{self.output()[-3000:]}"))
        self.remember_family()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log, "a") as out:
            for line in self.proc.stdout:
                self.lines.append(line)
                self._lines.put(line)
                out.write(line)
                out.flush()
        self._lines.put(None)

    def output(self) -> str:
        return "".join(self.lines)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def remember_family(self) -> list[psutil.Process]:
        """The run process and all its descendants now (and remember their pids for ``stop``)."""
        assert self.proc is not None
        try:
            parent = psutil.Process(self.proc.pid)
            members = [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        self.family.update(p.pid for p in members)
        return members

    def stop(self, *, timeout: float = RUN_STOP_TIMEOUT_S) -> int | None:
        """SIGTERM the run as a desktop session ends; SIGKILL what is left after ``timeout``."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.remember_family()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.returncode = self.proc.poll()
        self.survivors = living(self.family - {self.proc.pid}, grace=5.0)
        kill_pids(self.family | {self.proc.pid})
        self.proc.wait(5)
        self.proc = None
        return self.returncode


# -- the local database ----------------------------------------------------------------------


def local_rows(database: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    """Read the desktop's local SQLite file, as the host app would (read-only, WAL-safe)."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


# -- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


class UiPage:
    """One browser tab on a ``craftsync run``'s UI, with the page's errors collected."""

    def __init__(self, browser: Any, run: DesktopRun, *, viewport: dict[str, int] = VIEWPORT) -> None:
        self.run = run
        self.context: Any = browser.new_context(viewport=viewport)
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.settings_bodies: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("console", self._console)
        self.page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def _response(self, response: Any) -> None:
        if "/api/settings" in response.url:
            try:
                self.settings_bodies.append(response.text())
            except PlaywrightError as exc:  # a body the test cannot check counts as an error
                self.errors.append(f"unreadable {response.url}: {exc}")

    def open(self) -> UiPage:
        """Open the launch URL as the window does and wait until the status has loaded."""
        self.page.goto(self.run.launch_url, wait_until="load")
        self.wait_for(lambda: self.page.evaluate(
            "() => document.querySelector('#status-text')?.textContent !== 'Checking…'"), timeout=20,
            what="the status indicator's first answer")
        return self

    def wait_for(self, predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.2) -> Any:
        """Poll ``predicate`` (browser reads are cheap); fail with the page's state after ``timeout``."""
        def holds() -> Any:
            value = predicate()
            if not value and not self.run.alive():
                pytest.fail(f"'craftsync run' exited while waiting for {what}:\n{self.run.output()[-3000:]}")
            return value

        return wait_until(holds, timeout=timeout, interval=interval, what=what,
                                          fail=lambda message: pytest.fail(f"{message}; {self.describe()}"))

    def state(self) -> str:
        return str(self.page.get_attribute("#status-indicator", "data-state"))

    def text(self, selector: str) -> str:
        return str(self.page.text_content(selector) or "").strip()

    def describe(self) -> str:
        """What a person would see in the header and the customers card, for failure messages."""
        try:
            return json.dumps(self.page.evaluate("""() => ({
                state: document.querySelector('#status-indicator')?.dataset.state,
                status: document.querySelector('#status')?.innerText,
                card: document.querySelector('#sync-card-customers')?.dataset.state,
                progress: document.querySelector('#progress-text-customers')?.textContent,
                message: document.querySelector('#sync-message-customers')?.textContent,
            })"""), ensure_ascii=False) + f"; page errors: {self.errors[-5:]}"
        except PlaywrightError as exc:  # the page itself is gone
            return f"(page unreadable: {exc})"

    def tab(self, name: str) -> None:
        self.page.click(f"#tab-{name}")
        self.page.wait_for_selector(f"#panel-{name}:not([hidden])")

    def watch_card(self, entity: str) -> None:
        """Log every change the page makes to a sync card: {state, value, max, determinate, text}."""
        self.page.evaluate("""(entity) => {
            window.__cards = window.__cards || {};
            if (window.__cards[entity]) return;
            const log = window.__cards[entity] = [];
            const card = document.querySelector('#sync-card-' + entity);
            const bar = document.querySelector('#progress-' + entity);
            const text = document.querySelector('#progress-text-' + entity);
            const snap = () => ({state: card.dataset.state, value: bar.value, max: bar.max,
                                 determinate: bar.hasAttribute('value'), text: text.textContent});
            new MutationObserver(() => {
                const now = snap(), last = log[log.length - 1];
                if (!last || JSON.stringify(last) !== JSON.stringify(now)) log.push(now);
            }).observe(card, {attributes: true, subtree: true, childList: true, characterData: true});
        }""", entity)

    def card_log(self, entity: str) -> list[dict[str, Any]]:
        return list(self.page.evaluate("(entity) => window.__cards[entity].slice()", entity))

    def sync_customers(self, direction: str | None = None) -> str:
        """Press "Sync customers" (with ``direction`` chosen on its card); the run id it queued.
        The card's log starts afresh with the click."""
        self.watch_card("customers")
        if direction:
            self.page.select_option("#direction-customers", direction)
        self.page.evaluate("() => { window.__cards.customers.length = 0; }")
        with self.page.expect_response(lambda r: r.url.endswith("/api/sync") and r.request.method == "POST") as info:
            self.page.click("#sync-customers")
        response = info.value
        assert response.status == 202, response.text()
        return str(response.json()["run_id"])

    def wait_card_showed(self, entity: str, predicate: Callable[[dict[str, Any]], bool], *, timeout: float,
                         what: str) -> dict[str, Any]:
        """The first state the card showed since the last click for which ``predicate`` holds.

        (Its log, not its state now: the page's cards follow every run on the Redis server's
        event channel, so a later event of another run could already have changed it.)"""
        return dict(self.wait_for(lambda: next((s for s in self.card_log(entity) if predicate(s)), None),
                                  timeout=timeout, what=f"#sync-card-{entity} to show {what} "
                                  f"(it showed {self.card_log(entity)[-4:]})"))

    def screenshot(self, name: str) -> Path:
        """Save the page as docs/screenshots/``name``, once CSS transitions (0.3 s) have ended."""
        self.page.wait_for_timeout(600)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / name
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        if self.context is not None:
            self.context.close()
            self.context = None


# -- the window (pywebview on QtWebEngine, under Xvfb) ----------------------------------------

#: Xvfb's screen: a little taller than the window (1280×820) so that all of it is on screen.
SCREEN: Final = "1280x900x24"


def require_qtwebengine() -> None:
    try:
        found = importlib.util.find_spec("PyQt6.QtWebEngineWidgets") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        service_missing("PyQt6-WebEngine is not installed (pywebview[qt] has no wheel for this platform)")


@pytest.fixture
def display(tmp_path: Path) -> Iterator[str]:
    """A new Xvfb display (Xvfb picks a free number itself: -displayfd)."""
    require_xvfb()
    require_qtwebengine()
    read_end, write_end = os.pipe()
    log = tmp_path / "xvfb.log"
    with open(log, "wb") as out:
        xvfb = subprocess.Popen([str(XVFB), "-displayfd", str(write_end), "-screen", "0", SCREEN, "-nolisten", "tcp"],
                                pass_fds=(write_end,), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 30)
        number = os.read(read_end, 64).decode().strip() if ready else ""
        if not number.isdigit():
            pytest.fail(f"Xvfb gave no display number within 30 s:\n{tail(log)}")
        yield f":{number}"
    finally:
        os.close(read_end)
        stop_group(xvfb, timeout=10)


def window_env(home: Path, display: str, **variables: str) -> dict[str, str]:
    """No REDIS_URL and no remote: the session starts its embedded broker and demo server."""
    return run_env(home, DISPLAY=display, QT_QPA_PLATFORM="xcb", **variables)


def wait_run(run: DesktopRun, run_id: str, *, timeout: float) -> dict[str, Any]:
    """The local history row of ``run_id`` once that run has ended (the local database is the
    truth; the page's cards follow events on a Redis channel)."""
    def ended() -> dict[str, Any] | None:
        row = run_history(run, run_id)
        return row if row is not None and row["status"] not in ("running", "queued") else None

    return dict(wait_until(ended, timeout=timeout, interval=0.2, what=f"run {run_id} to end"))


def run_history(run: DesktopRun, run_id: str) -> dict[str, Any] | None:
    """The local history row of ``run_id`` (the UI server's /api/history, with the secret)."""
    answer = ui_get(run, "/api/history?limit=200")
    return next((r for r in answer["runs"] if r["run_id"] == run_id), None)


def ui_post(run: DesktopRun, path: str, body: dict[str, Any]) -> Any:
    """POST to the run's UI server as the page does."""
    secret = run.launch_url.split("token=", 1)[1]
    response = httpx.post(f"{run.base_url}{path}", json=body, headers={"X-CraftSync-Token": secret}, timeout=10)
    assert response.status_code in (200, 201, 202), response.text[:500]
    return response.json()


def ui_get(run: DesktopRun, path: str) -> Any:
    """GET from the run's UI server as the page does (the per-launch secret as a header)."""
    secret = run.launch_url.split("token=", 1)[1]
    response = httpx.get(f"{run.base_url}{path}", headers={"X-CraftSync-Token": secret}, timeout=10)
    assert response.status_code == 200, response.text[:500]
    return response.json()


def copy_screenshot(source: Path, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / name
    shutil.copyfile(source, target)
    return target


__all__ = [
    "CHROMIUM",
    "SCREEN",
    "SCREENSHOTS",
    "SMALL_VIEWPORT",
    "VIEWPORT",
    "DesktopRun",
    "RemoteServer",
    "UiPage",
    "another_redis_db",
    "chromium",
    "copy_screenshot",
    "display",
    "free_port",
    "kill_pids",
    "living",
    "local_rows",
    "require_chromium",
    "require_qtwebengine",
    "require_xvfb",
    "remote_env",
    "run_env",
    "run_history",
    "stop_group",
    "tail",
    "ui_get",
    "ui_post",
    "user_env",
    "wait_run",
    "window_env",
    "write_preferences",
]
