"""The UI drivers of tests/support/driver.py, proved on a real ``craftsync run``: one journey
script, driven once through Playwright in Debian's Chromium (``craftsync run --browser``) and
once over raw DevTools in the real pywebview window under Xvfb (``craftsync run``, no
``--browser``), must see and do the same.

The journey: wait until the status says Online, open Settings with a click, choose the
"manual" conflict policy, save, and find it saved behind the UI; type into a field and read
it back; move between tabs with keys; take a screenshot; and fail with a message that says
what was waited for and what the page showed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from tests.support.e2e import (
    DesktopRun,
    UiPage,
    chromium,  # noqa: F401  (fixture)
    display,  # noqa: F401  (fixture)
    free_port,
    run_env,
    ui_get,
    window_env,
)
from tests.support.driver import Driver, DriverError, PlaywrightDriver, WindowDriver

pytestmark = pytest.mark.slow

#: Seconds the status indicator gets to say Online (the demo server starts with the session).
ONLINE_TIMEOUT_S: Final = 60.0
#: The eight bytes every PNG file starts with.
PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
#: Logs each click, keydown and input event as [type, target id, isTrusted] in window.__events.
TRUST_LOG_JS: Final = """() => {
    window.__events = [];
    for (const kind of ["click", "keydown", "input"]) {
        document.addEventListener(kind, (e) => window.__events.push([kind, e.target.id, e.isTrusted]), true);
    }
    return true;
}"""
#: Bytes below which a screenshot of the UI can only be an unpainted (blank) page.
PAINTED_PNG_BYTES: Final = 20_000


@pytest.fixture
def in_chromium(tmp_path: Path, chromium: Any) -> Iterator[tuple[Driver, DesktopRun]]:  # noqa: F811
    """``craftsync run --browser`` and a Chromium tab on it, driven through Playwright."""
    home = tmp_path / "home"
    run = DesktopRun(home, run_env(home), log=tmp_path / "run.log")
    page: UiPage | None = None
    try:
        run.start()
        page = UiPage(chromium, run)
        yield PlaywrightDriver(page.page), run
    finally:
        if page is not None:
            page.close()
        run.stop()


@pytest.fixture
def in_window(tmp_path: Path, display: str) -> Iterator[tuple[Driver, DesktopRun]]:  # noqa: F811
    """``craftsync run`` with its real window on an Xvfb display, driven over the DevTools
    endpoint QtWebEngine opens for QTWEBENGINE_REMOTE_DEBUGGING."""
    home = tmp_path / "home"
    devtools = free_port()
    run = DesktopRun(home, window_env(home, display, QTWEBENGINE_REMOTE_DEBUGGING=f"127.0.0.1:{devtools}"),
                     log=tmp_path / "run.log", browser=False)
    driver: WindowDriver | None = None
    try:
        run.start()
        driver = WindowDriver(devtools, run.base_url)
        yield driver, run
    finally:
        if driver is not None:
            driver.close()
        run.stop()


def png_size(path: Path) -> tuple[int, int]:
    """A PNG file's width and height, from its header (IHDR, the first chunk)."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR", f"{path.name} is not a PNG: {head!r}"
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def settings_journey(ui: Driver, run: DesktopRun, shot: Path) -> None:
    # Given: the UI as the window opens it (the launch secret leaves the address bar)
    ui.goto(run.launch_url)
    assert "token=" not in str(ui.evaluate("location.href"))
    assert ui.wait_for("js:document.title", timeout=10, what="the page's title") == "CraftSync"
    ui.wait_text("#status-text", "Online", timeout=ONLINE_TIMEOUT_S, what="the status indicator to say Online")
    assert ui.count("#tab-records, #tab-history, #tab-settings") == 3
    assert ui.text("#tab-settings") == "Settings"
    assert not ui.visible("#panel-settings")
    # (Every click, key and input event from here on is logged, with whether the browser made
    # it from real input: events made by a script are not "trusted".)
    assert ui.evaluate(TRUST_LOG_JS) is True

    # When: the user clicks the Settings tab
    ui.click("#tab-settings")

    # Then: the settings panel shows, filled from the saved settings, instead of the records
    ui.wait_for("#panel-settings", timeout=10, what="the settings panel")
    assert not ui.visible("#panel-records")
    assert ui.evaluate("location.hash") == "#settings"
    ui.wait_for("js:document.querySelector('#remote-url-note').textContent.trim() !== ''", timeout=15,
                what="the settings to load into the form")
    assert ui.value("#settings-policy") == "remote"

    # When: the user chooses "Ask me" (manual) as the conflict policy and saves
    ui.select("#settings-policy", "manual")
    assert ui.value("#settings-policy") == "manual"
    ui.click("#settings-save")

    # Then: the page says so, and the UI server has it
    assert "Saved" in ui.wait_text("#settings-result", "Saved", timeout=15, what="the save to be confirmed")
    assert ui_get(run, "/api/settings")["conflict_policy"] == "manual"

    # When: the user types an address, then another one over it, and leaves with Tab
    ui.fill("#settings-remote-url", "https://sync.example.com/api")
    assert ui.value("#settings-remote-url") == "https://sync.example.com/api"
    ui.fill("#settings-remote-url", "https://other.example.com/api")
    assert ui.value("#settings-remote-url") == "https://other.example.com/api"
    ui.press("#settings-remote-url", "Tab")
    # Then: the typed text replaced the old, and Tab moved the focus to the next field
    assert ui.evaluate("document.activeElement.id") == "settings-api-key"
    ui.fill("#settings-remote-url", "")
    assert ui.value("#settings-remote-url") == ""

    # When: the user ticks "Sync automatically" and unticks it again (not saved)
    was = bool(ui.evaluate("document.querySelector('#settings-auto-sync').checked"))
    ui.check("#settings-auto-sync", not was)
    assert ui.evaluate("document.querySelector('#settings-auto-sync').checked") is (not was)
    ui.check("#settings-auto-sync", was)
    assert ui.evaluate("document.querySelector('#settings-auto-sync').checked") is was

    # When: the user moves between the tabs with the keyboard (Enter on a tab, then an arrow)
    ui.press("#tab-history", "Enter")
    ui.wait_for("#panel-history", timeout=10, what="the history panel after Enter on its tab")
    ui.press("#tab-history", "ArrowRight")
    ui.wait_for("#panel-settings", timeout=10, what="the settings panel after ArrowRight")
    assert ui.evaluate("document.activeElement.id") == "tab-settings"

    # When: a screenshot is taken
    expected = ui.evaluate("[Math.round(innerWidth * devicePixelRatio), Math.round(innerHeight * devicePixelRatio)]")
    ui.screenshot(shot)
    # Then: it is a PNG of the page's viewport, painted
    assert png_size(shot) == tuple(expected)
    assert expected[0] >= 1024 and expected[1] >= 600, expected
    assert shot.stat().st_size > PAINTED_PNG_BYTES, shot.stat().st_size

    # And: a wait that cannot succeed fails with what it waited for and what the page showed
    with pytest.raises(DriverError) as failed:
        ui.wait_for("#no-such-element", timeout=0.5, what="an element the UI does not have")
    message = str(failed.value)
    assert "an element the UI does not have" in message, message
    assert run.base_url in message and "Skip to content CraftSync" in message, message

    # And: every click, key and typed text came as real input, not from a script
    events = ui.evaluate("window.__events")
    assert {kind for kind, _, _ in events} >= {"click", "keydown", "input"}, events
    assert [e for e in events if not e[2] and e[1] != "settings-policy"] == [], events

    # And: the page had no errors all along
    assert ui.errors == [], ui.errors


def test_the_settings_journey_in_chromium_through_playwright(
    in_chromium: tuple[Driver, DesktopRun], tmp_path: Path,
) -> None:
    ui, run = in_chromium
    settings_journey(ui, run, tmp_path / "chromium.png")


def test_the_settings_journey_in_the_real_window_over_devtools(
    in_window: tuple[Driver, DesktopRun], tmp_path: Path,
) -> None:
    ui, run = in_window
    settings_journey(ui, run, tmp_path / "window.png")
    assert "Opening the UI in the browser" not in run.output(), run.output()[-2000:]
    # And: a driver whose DevTools connection was closed attaches to the window's page again
    assert isinstance(ui, WindowDriver)
    ui.close()
    assert ui.value("#settings-policy") == "manual"
