"""The desktop window for real: pywebview on Qt (QtWebEngine) under an Xvfb display that the
test starts itself, with the session's broker, demo server, workers and UI server behind it.

Two views of it:
- a small program that starts a ``shell.session.Session`` and opens the window with the same
  settings as ``shell.window.open_window``, then asks the page itself (pywebview's ``run_js``) for
  the status indicator's state, and the test takes a screenshot of the X screen
  (docs/screenshots/window.png);
- ``craftsync run`` itself (no ``--browser``): it must open the window, not fall back to the
  browser, load the page in it, and close it and everything else on SIGTERM.

Debian packages needed besides the Python wheels: xvfb, and the X11/GL libraries QtWebEngine
loads (see .ci/run). No screenshot tool is needed: the screen is grabbed with PyQt6.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from tests.support.e2e import (
    SCREENSHOTS,
    DesktopRun,
    display,  # noqa: F401  (fixture)
    free_port,
    window_env,
    write_preferences,
)
from tests.support.process import wait_until
from tests.support.worker import ROOT

pytestmark = pytest.mark.slow

#: Start a session and open its window as ``craftsync run`` does, then read the page's own
#: status indicator through pywebview's evaluate_js; write what it saw to argv[1], keep the
#: window open until SIGTERM (the test takes its screenshot meanwhile), then close it.
PROBE: Final = r'''
import json, os, signal, sys, time
from pathlib import Path

from craftsync.shell.session import Session
from craftsync.shell.window import DEFAULT_SIZE, MIN_SIZE
from craftsync.worker.settings import Settings

out = Path(sys.argv[1])
session = Session(Settings.from_env(use_runtime=False))
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda *_: session.stop())
session.start()
print(f"UI: {session.launch_url}", flush=True)
if os.geteuid() == 0:  # as shell.window.open_window does
    os.environ["QTWEBENGINE_CHROMIUM_FLAGS"] = (os.environ.get("QTWEBENGINE_CHROMIUM_FLAGS", "") + " --no-sandbox").strip()

import webview

window = webview.create_window("CraftSync", session.launch_url, width=DEFAULT_SIZE[0], height=DEFAULT_SIZE[1],
                               min_size=MIN_SIZE)
STATE = "(function () { var e = document.querySelector('#status-indicator'); return e ? e.dataset.state : null; })()"


def page_eval(expression):
    # run_js hands the script to QtWebEngine as it is (evaluate_js wraps it in eval(), which
    # the UI's Content-Security-Policy rightly forbids); JSON carries the value back.
    raw = window.run_js("JSON.stringify(" + expression + ")")
    return json.loads(raw) if raw else None


def probe():
    seen = {"states": []}
    try:
        seen["loaded"] = window.events.loaded.wait(60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not session._stopped.is_set():
            state = page_eval(STATE)
            if not seen["states"] or seen["states"][-1] != state:
                seen["states"].append(state)
            if state == "online":
                break
            time.sleep(0.25)
        time.sleep(1.0)  # let the page paint what it shows
        seen["state"] = page_eval(STATE)
        seen["status_text"] = page_eval("document.querySelector('#status').innerText")
        seen["viewport"] = page_eval("[window.innerWidth, window.innerHeight]")
        seen["url"] = window.get_current_url()
        seen["geometry"] = [window.x, window.y, window.width, window.height]
    except Exception as exc:
        seen["error"] = repr(exc)
    out.write_text(json.dumps(seen))
    session.wait()  # until SIGTERM
    window.destroy()


try:
    webview.start(probe, gui="qt")
finally:
    session.stop()
'''

#: Grab the X screen (or a part of it) into a PNG with Qt itself; print size and colour count.
GRAB: Final = r'''
import sys
from PyQt6.QtGui import QGuiApplication

app = QGuiApplication(sys.argv[:1])
x, y, w, h = (int(v) for v in sys.argv[2:6])
image = app.primaryScreen().grabWindow(0, x, y, w, h).toImage()
if not image.save(sys.argv[1], "PNG"):
    sys.exit("could not save " + sys.argv[1])
colours = {image.pixel(i, j) for i in range(0, image.width(), 4) for j in range(0, image.height(), 4)}
print(image.width(), image.height(), len(colours))
'''


def grab(display: str, target: Path, geometry: list[int]) -> tuple[int, int, int]:
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    done = subprocess.run([sys.executable, "-c", GRAB, str(target), *map(str, geometry)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    width, height, colours = (int(v) for v in done.stdout.split()[-3:])
    return width, height, colours


def test_a_real_pywebview_window_under_xvfb_shows_the_status_live_from_inside_the_page(
    tmp_path: Path, display: str,
) -> None:
    # Given: a desktop session (embedded broker, demo server, workers, UI server) and its
    # pywebview window on a real X display
    home = tmp_path / "home"
    # No sync at launch: the page is to say "Online", not "Syncing…" during the launch sync
    write_preferences(home, sync_on_launch=False)
    seen_file = tmp_path / "seen.json"
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    app = DesktopRun(home, window_env(home, display), log=tmp_path / "window.log",
                     argv=[sys.executable, str(script), str(seen_file)])
    try:
        app.start()

        # When: the page in the window is asked for its status indicator
        wait_until(lambda: seen_file.exists() or not app.alive(), timeout=150, interval=0.2,
                   what="the window's page to report its status")
        assert seen_file.exists(), f"the window program exited with {app.proc and app.proc.poll()}:\n" \
                                   f"{app.output()[-3000:]}"
        seen: dict[str, Any] = json.loads(seen_file.read_text())

        # Then: the page loaded in the window and says online (the demo server is reachable)
        assert "error" not in seen, seen
        assert seen["loaded"] is True, seen
        assert seen["state"] == "online", f"{seen}\n{app.output()[-2000:]}"
        assert seen["url"].startswith(app.base_url), seen
        assert seen["viewport"][0] >= 1024 and seen["viewport"][1] >= 600, seen
        assert "Online" in seen["status_text"], seen

        # And: a screenshot of the window shows a real, painted page
        x, y, width, height = seen["geometry"]
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        target = SCREENSHOTS / "window.png"
        shot = grab(display, target, [max(x, 0), max(y, 0), width, height])
        assert shot[0] >= 1024 and shot[1] >= 600, shot
        assert shot[2] >= 20, f"the screenshot has only {shot[2]} colours: an unpainted window?"
        assert target.stat().st_size > 20_000, target.stat().st_size
    finally:
        code = app.stop()
    # And: SIGTERM closes the window and ends the program cleanly
    assert code == 0, app.output()[-3000:]


def test_craftsync_run_without_browser_opens_the_window_loads_the_ui_in_it_and_closes_it_on_sigterm(
    tmp_path: Path, display: str,
) -> None:
    # Given: a display, and QtWebEngine's DevTools endpoint so that the test can see the pages
    # the window holds (plain HTTP: /json lists them)
    home = tmp_path / "home"
    devtools = free_port()
    run = DesktopRun(home, window_env(home, display, QTWEBENGINE_REMOTE_DEBUGGING=f"127.0.0.1:{devtools}"),
                     log=tmp_path / "run.log", browser=False)
    try:
        # When: the user starts the app without --browser
        run.start()

        # Then: a window opens with the UI in it, and the page's scripts ran (they set #records)
        def ui_page() -> dict[str, Any] | None:
            try:
                pages = httpx.get(f"http://127.0.0.1:{devtools}/json/list", timeout=2).json()
            except (httpx.HTTPError, ValueError):
                return None
            return next((p for p in pages if p.get("type") == "page" and p.get("url", "").startswith(run.base_url)
                         and p.get("title") == "CraftSync" and p["url"].endswith("#records")), None)

        page = wait_until(lambda: ui_page() or (not run.alive() and pytest.fail(run.output()[-3000:])),
                          timeout=90, interval=0.5, what="the window to load the UI")
        assert "token=" not in page["url"], "the launch secret must leave the address bar (redirect to /)"
        assert "Opening the UI in the browser" not in run.output(), run.output()[-2000:]
        family = run.remember_family()
        names = {p.name() for p in family if p.is_running()}
        assert any("QtWebEngine" in n for n in names), names
    finally:
        # When: the session gets SIGTERM (logout, the task manager)
        started = time.monotonic()
        code = run.stop()
    # Then: the window closes and the program ends, with everything it started
    assert code == 0, run.output()[-3000:]
    print(f"\nwindow session stopped {time.monotonic() - started:.1f} s after SIGTERM")
    assert run.survivors == [], f"left running after the app ended: {run.survivors}"
    assert not (home / "runtime.json").exists()
