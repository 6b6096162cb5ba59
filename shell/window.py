"""The desktop window (pywebview with its Qt backend), or the browser when there is no GUI.

The window opens the UI server's launch URL, which carries the per-launch secret. Closing
the window ends the session; ending the session (a signal) closes the window. The browser
gets the secret through a local 0600 page, never on its command line.
"""

from __future__ import annotations

import html
import importlib.util
import os
import sys
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Final

from craftsync.worker.settings import data_dir, make_private

#: The smallest size the UI is laid out for (spec §8: 1024×700 and up).
MIN_SIZE: Final = (1024, 700)
DEFAULT_SIZE: Final = (1280, 820)
#: The local page the browser is started with (in the data dir; it carries the secret).
LAUNCH_PAGE: Final = "open-ui.html"


class NoGui(Exception):
    """Raised when no window can be opened here; the message says why."""


def gui_problem() -> str | None:
    """Why no window can be opened here, or None when one can."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY is not set)"
    for module in ("webview", "qtpy", "PyQt6.QtWebEngineWidgets"):
        try:
            if importlib.util.find_spec(module) is None:
                return f"the GUI toolkit is not installed ({module})"
        except ModuleNotFoundError:
            return f"the GUI toolkit is not installed ({module})"
    return None


def open_window(url: str, stopped: threading.Event, on_closed: Callable[[], None]) -> None:
    """Show the UI in a window until it is closed or ``stopped`` is set; blocks (main thread)."""
    problem = gui_problem()
    if problem:
        raise NoGui(problem)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # QtWebEngine's Chromium refuses to run its sandbox as root.
        flags = os.environ.get("QTWEBENGINE_CHROMIUM_FLAGS", "")
        if "--no-sandbox" not in flags:
            os.environ["QTWEBENGINE_CHROMIUM_FLAGS"] = f"{flags} --no-sandbox".strip()
    import webview

    # text_select: pywebview would otherwise inject an inline style, which the page's CSP refuses.
    window = webview.create_window(
        "CraftSync", url, width=DEFAULT_SIZE[0], height=DEFAULT_SIZE[1], min_size=MIN_SIZE, text_select=True
    )

    def close_when_stopped() -> None:
        stopped.wait()
        window.destroy()

    try:
        webview.start(close_when_stopped, gui="qt")
    except Exception as exc:  # the toolkit failed at start-up: fall back to the browser
        raise NoGui(f"the window could not open: {exc}") from exc
    finally:
        on_closed()


def open_browser(url: str) -> bool:
    """Open ``url`` in the default browser; False when there is none.

    The browser is started with the address of a local page that forwards to ``url``, never
    with ``url`` itself: a browser's command line is readable by every user of the machine
    (``/proc/<pid>/cmdline``), and ``url`` carries the per-launch secret.
    """
    try:
        return webbrowser.open(launch_page(url).as_uri())
    except webbrowser.Error:
        return False


def launch_page(url: str) -> Path:
    """Write ``open-ui.html`` in the data dir, readable by the user only (0600), forwarding to
    ``url`` (the way Jupyter hands its token to the browser); return its path."""
    page = make_private(data_dir()) / LAUNCH_PAGE
    target = html.escape(url, quote=True)
    text = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
            f'<meta http-equiv="refresh" content="0;url={target}"><title>CraftSync</title></head>'
            f'<body><p><a href="{target}">Open CraftSync</a></p></body></html>')
    fresh = page.with_suffix(".new")
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(fresh, 0o600)
    os.replace(fresh, page)
    return page
