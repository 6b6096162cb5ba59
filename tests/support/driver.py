"""One small UI driver interface for the end-to-end journeys, so that the same script drives
the page in Debian's Chromium (through Playwright) and in the real pywebview window
(QtWebEngine under Xvfb), where a person actually meets it.

Playwright cannot drive the window: ``connect_over_cdp`` needs browser-level DevTools commands
(browser contexts) that QtWebEngine does not offer. QtWebEngine's DevTools endpoint
(``QTWEBENGINE_REMOTE_DEBUGGING``) does list each page with a WebSocket of its own, and the
page-level Chrome DevTools Protocol works on it, so ``WindowDriver`` is a small CDP client over
that WebSocket. It uses the input a person makes: clicks are mouse events at the element's
centre (after scrolling it into view, and only once nothing covers it), typing is focus plus
inserted text, keys are key events. JavaScript only reads the page, except for ``select``
(see there).

Every wait has a timeout, and a failure says what was waited for, where the page was and what
it showed (``DriverError``, an ``AssertionError``, so pytest reports it as a test failure).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, NoReturn, Protocol

import httpx
import websocket
from playwright.sync_api import Error as PlaywrightError

from tests.support.process import wait_until

#: Seconds an action (click, fill, …) waits for its element to be there, visible and free.
ACTION_TIMEOUT_S: Final = 15.0
#: Seconds one DevTools command may take before the driver gives up on its answer.
COMMAND_TIMEOUT_S: Final = 30.0
#: Seconds between two looks at the page while waiting.
POLL_INTERVAL_S: Final = 0.1
#: Characters of the page's text shown in a failure message.
BODY_EXCERPT: Final = 300
#: Page errors kept for failure messages and for tests that want none.
ERRORS_KEPT: Final = 50
#: A prefix that makes ``wait_for`` wait for a JavaScript expression instead of a selector.
JS_PREFIX: Final = "js:"

#: The keys ``press`` can send, the same on both drivers (DOM key name → DOM code, Windows
#: virtual key code, the text the key types). Enter types "\r": that is what makes Chromium
#: run the key's default action (submitting a form) as a real key press does.
KEYS: Final[dict[str, tuple[str, int, str]]] = {
    "Enter": ("Enter", 13, "\r"),
    "Tab": ("Tab", 9, ""),
    "Escape": ("Escape", 27, ""),
    "Backspace": ("Backspace", 8, ""),
    "Delete": ("Delete", 46, ""),
    "ArrowDown": ("ArrowDown", 40, ""),
    "ArrowUp": ("ArrowUp", 38, ""),
    "ArrowLeft": ("ArrowLeft", 37, ""),
    "ArrowRight": ("ArrowRight", 39, ""),
    "Home": ("Home", 36, ""),
    "End": ("End", 35, ""),
}


class DriverError(AssertionError):
    """A UI action or wait failed; the message says what, and what the page showed."""


class Driver(Protocol):
    """What a journey may do with the page: a person's actions, and reads to check them."""

    #: The page's uncaught errors and console errors since the driver was made.
    errors: list[str]

    def goto(self, url: str) -> None:
        """Load ``url`` (following redirects) and wait for its load event."""

    def click(self, selector: str) -> None:
        """Click the centre of the element, once it is visible and nothing covers it."""

    def fill(self, selector: str, text: str) -> None:
        """Replace the field's content with ``text``, typed."""

    def press(self, selector: str, key: str) -> None:
        """Focus the element and press ``key`` (one of ``KEYS``)."""

    def select(self, selector: str, value: str) -> None:
        """Choose the ``<select>``'s option with ``value``, as a user's choice (input, change)."""

    def check(self, selector: str, on: bool) -> None:
        """Click the checkbox if it is not already ``on``."""

    def text(self, selector: str) -> str:
        """The element's rendered text (innerText), trimmed."""

    def value(self, selector: str) -> str:
        """A form control's value."""

    def visible(self, selector: str) -> bool:
        """Whether the element is there and visible now (no waiting)."""

    def count(self, selector: str) -> int:
        """How many elements match now (no waiting)."""

    def evaluate(self, js: str) -> Any:
        """The JSON value of a JavaScript expression (a function is called; promises awaited)."""

    def wait_for(self, selector_or_js_predicate: str, *, timeout: float, what: str) -> Any:
        """Wait until a selector's element is visible, or a ``js:`` expression is truthy (its value)."""

    def wait_text(self, selector: str, contains: str, *, timeout: float, what: str) -> str:
        """Wait until the element's text contains ``contains``; its text then."""

    def screenshot(self, path: Path) -> Path:
        """A PNG of the viewport, written to ``path``."""


#: Visible as Playwright means it: a non-empty box and not visibility:hidden.
VISIBLE_JS: Final = """(el) => {
    if (!el) return false;
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && getComputedStyle(el).visibility !== "hidden";
}"""

#: Where the page is and what it shows, for failure messages.
DESCRIBE_JS: Final = f"""({{
    url: location.href,
    body: (document.body ? document.body.innerText : "").replace(/\\s+/g, " ").trim().slice(0, {BODY_EXCERPT}),
}})"""


def _js_string(value: str) -> str:
    """``value`` as a JavaScript string literal (JSON is a subset of JavaScript)."""
    return json.dumps(value)


def poll(probe: Callable[[], Any], *, timeout: float, what: str, passing: type[Exception],
         describe: Callable[[], str]) -> Any:
    """``wait_until`` ``probe`` returns something truthy (returned); a ``passing`` failure of a
    probe (the page is between two documents) only means "not yet". On timeout, DriverError
    with what the page shows."""
    def fail(message: str) -> NoReturn:
        raise DriverError(f"{message}; {describe()}")

    return wait_until(probe, timeout=timeout, interval=POLL_INTERVAL_S, what=what, fail=fail, passing=(passing,))


def _predicate_js(selector_or_js: str) -> str:
    """The JavaScript expression that ``wait_for`` waits on."""
    if selector_or_js.startswith(JS_PREFIX):
        return selector_or_js[len(JS_PREFIX):].strip()
    return f"({VISIBLE_JS})(document.querySelector({_js_string(selector_or_js)}))"


def _look_timeout(wait: float) -> float:
    """Seconds one look may take during a wait of ``wait`` s: a hung page must not stretch it."""
    return min(COMMAND_TIMEOUT_S, max(wait, 1.0))


def _describe(seen: Any, errors: list[str]) -> str:
    if not isinstance(seen, dict):
        return f"page unreadable ({seen}); page errors: {errors[-3:]}"
    return f"page at {seen.get('url')}, showing {seen.get('body')!r}; page errors: {errors[-3:]}"


# -- Playwright (Chromium) -------------------------------------------------------------------


class PlaywrightDriver:
    """``Driver`` over a Playwright page (sync API): Playwright's own actions and waits, with
    its errors turned into ``DriverError`` messages like ``WindowDriver``'s."""

    def __init__(self, page: Any, *, action_timeout: float = ACTION_TIMEOUT_S) -> None:
        self.page = page
        self.errors: list[str] = []
        self._ms = action_timeout * 1000
        page.on("pageerror", lambda exc: self._error(f"pageerror: {exc}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self._error(f"console: {message.text}")

    def _error(self, text: str) -> None:
        self.errors.append(text)
        del self.errors[:-ERRORS_KEPT]

    def describe(self) -> str:
        try:
            return _describe(self.page.evaluate(DESCRIBE_JS), self.errors)
        except Exception as exc:  # the page itself is gone: say so instead of hiding the failure
            return _describe(f"{type(exc).__name__}: {exc}", self.errors)

    @contextmanager
    def _failing(self, what: str) -> Iterator[None]:
        """Turn Playwright's errors into a ``DriverError`` that says what was being done."""
        try:
            yield
        except PlaywrightError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DriverError(f"{what}: {first}; {self.describe()}") from None

    def goto(self, url: str) -> None:
        with self._failing(f"opening {url}"):
            self.page.goto(url, wait_until="load", timeout=COMMAND_TIMEOUT_S * 1000)

    def click(self, selector: str) -> None:
        with self._failing(f"clicking {selector}"):
            self.page.click(selector, timeout=self._ms)

    def fill(self, selector: str, text: str) -> None:
        with self._failing(f"filling {selector}"):
            self.page.fill(selector, text, timeout=self._ms)

    def press(self, selector: str, key: str) -> None:
        if key not in KEYS:
            raise ValueError(f"unknown key {key!r}: one of {', '.join(KEYS)}")
        with self._failing(f"pressing {key} in {selector}"):
            self.page.press(selector, key, timeout=self._ms)

    def select(self, selector: str, value: str) -> None:
        with self._failing(f"choosing {value!r} in {selector}"):
            self.page.select_option(selector, value=value, timeout=self._ms)

    def check(self, selector: str, on: bool) -> None:
        with self._failing(f"{'checking' if on else 'unchecking'} {selector}"):
            self.page.set_checked(selector, on, timeout=self._ms)

    def text(self, selector: str) -> str:
        with self._failing(f"reading the text of {selector}"):
            return str(self.page.inner_text(selector, timeout=self._ms)).strip()

    def value(self, selector: str) -> str:
        with self._failing(f"reading the value of {selector}"):
            return str(self.page.input_value(selector, timeout=self._ms))

    def visible(self, selector: str) -> bool:
        with self._failing(f"looking at {selector}"):
            return bool(self.page.is_visible(selector))

    def count(self, selector: str) -> int:
        with self._failing(f"counting {selector}"):
            return int(self.page.locator(selector).count())

    def evaluate(self, js: str) -> Any:
        with self._failing(f"evaluating {js[:80]!r}"):
            return self.page.evaluate(js)

    def wait_for(self, selector_or_js_predicate: str, *, timeout: float, what: str) -> Any:
        if not selector_or_js_predicate.startswith(JS_PREFIX):
            with self._failing(f"waiting {timeout:g} s for {what}"):
                self.page.wait_for_selector(selector_or_js_predicate, state="visible", timeout=timeout * 1000)
            return True
        # Polled from here: Playwright's in-page polling compiles the predicate with eval,
        # which the UI's Content-Security-Policy forbids (as it should).
        expression = f"() => ({_predicate_js(selector_or_js_predicate)})"
        return self._poll(lambda: self.page.evaluate(expression), timeout=timeout, what=what)

    def wait_text(self, selector: str, contains: str, *, timeout: float, what: str) -> str:
        probe = "([sel, part]) => { const el = document.querySelector(sel); " \
                "return el && el.innerText.includes(part) ? el.innerText.trim() : null; }"
        return str(self._poll(lambda: self.page.evaluate(probe, [selector, contains]), timeout=timeout,
                              what=f"{what} ({selector} to say {contains!r})"))

    def _poll(self, probe: Callable[[], Any], *, timeout: float, what: str) -> Any:
        return poll(probe, timeout=timeout, what=what, passing=PlaywrightError, describe=self.describe)

    def screenshot(self, path: Path) -> Path:
        with self._failing(f"taking a screenshot into {path.name}"):
            self.page.screenshot(path=str(path), timeout=COMMAND_TIMEOUT_S * 1000)
        return path


# -- raw Chrome DevTools Protocol (the window) -----------------------------------------------


class CdpError(DriverError):
    """A DevTools command was refused (its error message), or got no answer in time."""


class CdpClosed(CdpError):
    """The target's WebSocket closed (the page went away, or was replaced by a new target)."""


class CdpConnection:
    """One WebSocket to one DevTools target. Commands get increasing ids, and each answer is
    matched by its id: events (and late answers to commands given up on) can arrive between
    a command and its answer; events go to ``on_event``, late answers are dropped."""

    def __init__(self, ws_url: str, *, on_event: Callable[[dict[str, Any]], None],
                 timeout: float = COMMAND_TIMEOUT_S) -> None:
        self.ws_url = ws_url
        self._on_event = on_event
        self._next_id = 0
        try:
            # No Origin header: Chromium's DevTools refuses WebSockets from origins it does not know.
            self._ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        except (OSError, websocket.WebSocketException) as exc:
            raise CdpClosed(f"could not connect to {ws_url}: {exc}") from exc

    def call(self, method: str, params: dict[str, Any] | None = None, *,
             timeout: float = COMMAND_TIMEOUT_S) -> dict[str, Any]:
        """Send one command and return its result; ``CdpError`` with the target's message."""
        self._next_id += 1
        ident = self._next_id
        try:
            self._ws.send(json.dumps({"id": ident, "method": method, "params": params or {}}))
        except (OSError, websocket.WebSocketException) as exc:
            raise CdpClosed(f"{method}: the DevTools connection is gone ({exc})") from exc
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline, method, timeout)
            if message.get("id") == ident:
                if "error" in message:
                    raise CdpError(f"{method} refused: {message['error'].get('message', message['error'])}")
                return dict(message.get("result", {}))
            if "method" in message:
                self._on_event(message)

    def _receive(self, deadline: float, method: str, timeout: float) -> dict[str, Any]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CdpError(f"{method}: no answer within {timeout:g} s")
        self._ws.settimeout(left)
        try:
            raw = self._ws.recv()
        except websocket.WebSocketTimeoutException:
            raise CdpError(f"{method}: no answer within {timeout:g} s") from None
        except (OSError, websocket.WebSocketException) as exc:
            raise CdpClosed(f"{method}: the DevTools connection closed ({exc})") from exc
        if not raw:  # a close frame reads as an empty message
            raise CdpClosed(f"{method}: the DevTools connection closed")
        return dict(json.loads(raw))

    def close(self) -> None:
        try:
            self._ws.close(timeout=2)
        except (OSError, websocket.WebSocketException):
            pass  # already gone: nothing left to close


def devtools_pages(port: int) -> list[dict[str, Any]]:
    """The page targets a DevTools endpoint lists now ([] while it does not answer yet)."""
    try:
        listed = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return []
    return [t for t in listed if isinstance(t, dict) and t.get("type") == "page"]


def find_page(port: int, url_prefix: str, *, prefer_id: str | None = None) -> dict[str, Any] | None:
    """A page target that can be attached to (listed with a WebSocket URL): ``prefer_id``'s
    while it is listed, wherever it went; else one whose URL starts with ``url_prefix``; or None."""
    pages = [p for p in devtools_pages(port) if p.get("webSocketDebuggerUrl")]
    same = [p for p in pages if prefer_id is not None and p.get("id") == prefer_id]
    return next(iter(same + [p for p in pages if str(p.get("url", "")).startswith(url_prefix)]), None)


#: Scrolls the element into view, then says where to click it, or what stops a click (not
#: there, hidden, disabled, moving, covered): a person clicks only what they can see and reach.
CLICK_POINT_JS: Final = """async (sel) => {
    const el = document.querySelector(sel);
    if (!el) return {problem: "matches no element"};
    el.scrollIntoView({block: "center", inline: "center", behavior: "instant"});
    const before = el.getBoundingClientRect();
    await new Promise((done) => setTimeout(done, 50));  // not requestAnimationFrame: it stalls in a hidden window
    const box = el.getBoundingClientRect();
    if (!visible(el)) return {problem: "is not visible"};
    if (el.disabled) return {problem: "is disabled"};
    if (box.x !== before.x || box.y !== before.y) return {problem: "is still moving"};
    const x = box.left + box.width / 2, y = box.top + box.height / 2;
    const hit = document.elementFromPoint(x, y);
    if (!hit || !(hit === el || el.contains(hit))) {
        const by = hit ? hit.tagName.toLowerCase() + (hit.id ? "#" + hit.id : "") : "nothing (off screen)";
        return {problem: "is covered by " + by};
    }
    return {x, y};
}"""

#: Focuses a visible, editable field and selects what it holds, so that typed text replaces it.
FOCUS_FIELD_JS: Final = """(sel) => {
    const el = document.querySelector(sel);
    if (!el) return {problem: "matches no element"};
    if (!visible(el)) return {problem: "is not visible"};
    if (el.disabled || el.readOnly) return {problem: "is not editable (disabled or read-only)"};
    el.scrollIntoView({block: "center", inline: "center", behavior: "instant"});
    el.focus();
    if (document.activeElement !== el) return {problem: "does not take focus"};
    if (typeof el.select === "function") el.select();
    else if (el.isContentEditable) getSelection().selectAllChildren(el);
    return {empty: !(el.value ?? el.textContent)};
}"""

#: Focuses a visible element (for a key press).
FOCUS_JS: Final = """(sel) => {
    const el = document.querySelector(sel);
    if (!el) return {problem: "matches no element"};
    if (!visible(el)) return {problem: "is not visible"};
    if (document.activeElement !== el) el.focus();
    return document.activeElement === el ? {} : {problem: "does not take focus"};
}"""

#: A <select>'s choice as the browser reports a user's: the value set, then input and change.
#: CDP cannot drive the native option popup (it is not part of the page), so this is the one
#: action done by script; the element must be visible and enabled, as for a person.
SELECT_JS: Final = """([sel, value]) => {
    const el = document.querySelector(sel);
    if (!el) return {problem: "matches no element"};
    if (el.tagName !== "SELECT") return {problem: "is not a <select> but a <" + el.tagName.toLowerCase() + ">"};
    if (!visible(el)) return {problem: "is not visible"};
    if (el.disabled) return {problem: "is disabled"};
    if (![...el.options].some((o) => o.value === value && !o.disabled)) {
        return {problem: "has no option " + JSON.stringify(value) + " (it has " + JSON.stringify([...el.options].map((o) => o.value)) + ")"};
    }
    el.focus();
    el.value = value;
    el.dispatchEvent(new Event("input", {bubbles: true}));
    el.dispatchEvent(new Event("change", {bubbles: true}));
    return {};
}"""

#: Reads one element: its rendered text (innerText), its value or whether it is checked.
READ_JS: Final = """([sel, what]) => {
    const el = document.querySelector(sel);
    if (!el) return {problem: "matches no element"};
    if (what === "text") return {value: el.innerText.trim()};
    if (what === "checked") return {value: Boolean(el.checked)};
    if (!("value" in el)) return {problem: "is not a form control"};
    return {value: String(el.value)};
}"""


class WindowDriver:
    """``Driver`` over raw CDP on a page that QtWebEngine's DevTools endpoint lists: the
    real window's page, found by its URL prefix. If its WebSocket closes, the driver attaches
    again: to the same target while it is listed (QtWebEngine keeps one target per window
    across navigations and reloads), else to a page listed under the prefix (a new target)."""

    def __init__(self, devtools_port: int, url_prefix: str, *, connect_timeout: float = 90.0,
                 action_timeout: float = ACTION_TIMEOUT_S) -> None:
        self.devtools_port = devtools_port
        self.url_prefix = url_prefix
        self.errors: list[str] = []
        self.embedder_errors: list[str] = []
        self._action_timeout = action_timeout
        self._target_id: str | None = None
        self._cdp: CdpConnection | None = None
        self._attach(connect_timeout)

    # -- the connection -----------------------------------------------------------------------

    def _attach(self, timeout: float) -> None:
        def attached() -> bool:
            page = find_page(self.devtools_port, self.url_prefix, prefer_id=self._target_id)
            if page is None:
                return False
            self._cdp = CdpConnection(str(page["webSocketDebuggerUrl"]), on_event=self._event)
            self._target_id = str(page.get("id"))
            # Runtime events carry the page's uncaught exceptions and console errors.
            self._cdp.call("Runtime.enable")
            return True

        def fail(message: str) -> NoReturn:
            listed = [p.get("url") for p in devtools_pages(self.devtools_port)]
            raise DriverError(f"{message} (pages listed: {listed})")

        wait_until(attached, timeout=timeout, interval=POLL_INTERVAL_S * 5, fail=fail, passing=(CdpError,),
                   what=f"a page starting with {self.url_prefix} to attach to on DevTools port {self.devtools_port}")

    def _event(self, message: dict[str, Any]) -> None:
        params = message.get("params", {})
        if message["method"] == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = f"pageerror: {details.get('exception', {}).get('description') or details.get('text')}"
            frames = details.get("stackTrace", {}).get("callFrames", [])
            # Thrown where no URL is known, i.e. by a script the window itself ran: the page's
            # CSP allows no inline script and no eval, so every script of the page has its URL,
            # and this is pywebview's injected bridge (its `window.pywebview._createApi(...)`
            # and `document.body.addEventListener(...)` can land in a document that is not
            # ready for them). The page does not use the bridge; its errors are kept apart.
            if not details.get("url") and not any(frame.get("url") for frame in frames):
                self.embedder_errors.append(text)
                return
            self._error(text)
        elif message["method"] == "Runtime.consoleAPICalled" and params.get("type") == "error":
            words = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
            self._error(f"console: {' '.join(words)}")

    def _error(self, text: str) -> None:
        self.errors.append(text)
        del self.errors[:-ERRORS_KEPT]

    def _call(self, method: str, params: dict[str, Any] | None = None, *,
              timeout: float = COMMAND_TIMEOUT_S) -> dict[str, Any]:
        """A command; once more on a fresh attachment if the target went away, except for
        input, which must not happen twice."""
        if self._cdp is None:
            self._attach(timeout)
        assert self._cdp is not None
        try:
            return self._cdp.call(method, params, timeout=timeout)
        except CdpClosed:
            self._cdp.close()
            self._cdp = None
            if method.startswith("Input."):
                raise
            self._attach(timeout)
            assert self._cdp is not None
            return self._cdp.call(method, params, timeout=timeout)

    def close(self) -> None:
        if self._cdp is not None:
            self._cdp.close()
            self._cdp = None

    # -- reading the page ---------------------------------------------------------------------

    def _eval(self, expression: str, *, timeout: float = COMMAND_TIMEOUT_S) -> Any:
        """The JSON value of ``expression`` (promises awaited); ``CdpError`` if it throws."""
        answer = self._call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                 "awaitPromise": True}, timeout=timeout)
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            thrown = str(details.get("exception", {}).get("description") or details.get("text"))
            raise CdpError(f"threw {thrown.splitlines()[0]}")  # its first line: the rest is our wrapper's stack
        return answer.get("result", {}).get("value")

    def _apply(self, function_js: str, *args: Any, timeout: float = COMMAND_TIMEOUT_S) -> Any:
        """Call a JavaScript function text with JSON arguments (one argument: as is); it can
        call ``visible(el)`` (``VISIBLE_JS``)."""
        arg = args[0] if len(args) == 1 else list(args)
        script = f"(() => {{ const visible = {VISIBLE_JS}; return ({function_js}); }})()({json.dumps(arg)})"
        return self._eval(script, timeout=timeout)

    def describe(self) -> str:
        try:
            return _describe(self._eval(DESCRIBE_JS, timeout=3), self.errors)
        except DriverError as exc:  # CdpError included: the page is gone or hangs
            return _describe(str(exc), self.errors)

    def _poll(self, probe: Callable[[], Any], *, timeout: float, what: str) -> Any:
        return poll(probe, timeout=timeout, what=what, passing=CdpError, describe=self.describe)

    def _ready(self, function_js: str, *args: Any, doing: str) -> dict[str, Any]:
        """Run a check-and-act script until it reports no problem (its answer), for up to
        the action timeout; fail with the last problem it reported."""
        problems: list[str] = []

        def attempt() -> list[dict[str, Any]] | None:
            answer = self._apply(function_js, *args)
            if not isinstance(answer, dict) or answer.get("problem"):
                problems.append(str(answer["problem"] if isinstance(answer, dict) else answer))
                return None
            return [answer]  # truthy even when the answer is {}

        try:
            return dict(self._poll(attempt, timeout=self._action_timeout, what=doing)[0])
        except DriverError:
            if not problems:
                raise
        raise DriverError(f"{doing} failed after {self._action_timeout:g} s: {args[0]} {problems[-1]}; "
                          f"{self.describe()}")

    def _read(self, selector: str, what: str) -> Any:
        return self._ready(READ_JS, selector, what, doing=f"reading the {what} of {selector}")["value"]

    def text(self, selector: str) -> str:
        return str(self._read(selector, "text"))

    def value(self, selector: str) -> str:
        return str(self._read(selector, "value"))

    def visible(self, selector: str) -> bool:
        return bool(self._eval(_predicate_js(selector)))

    def count(self, selector: str) -> int:
        return int(self._eval(f"document.querySelectorAll({_js_string(selector)}).length"))

    def evaluate(self, js: str) -> Any:
        # As Playwright's page.evaluate: a function is called, a promise is awaited.
        wrapped = f"(async () => {{ const value = (\n{js}\n); return typeof value === 'function' ? value() : value; }})()"
        try:
            return self._eval(wrapped)
        except CdpError as exc:
            raise DriverError(f"evaluating {js[:80]!r}: {exc}; {self.describe()}") from None

    def wait_for(self, selector_or_js_predicate: str, *, timeout: float, what: str) -> Any:
        expression = _predicate_js(selector_or_js_predicate)
        return self._poll(lambda: self._eval(expression, timeout=_look_timeout(timeout)), timeout=timeout, what=what)

    def wait_text(self, selector: str, contains: str, *, timeout: float, what: str) -> str:
        expression = f"(() => {{ const el = document.querySelector({_js_string(selector)}); " \
                     f"return el && el.innerText.includes({_js_string(contains)}) ? el.innerText.trim() : null; }})()"
        return str(self._poll(lambda: self._eval(expression, timeout=_look_timeout(timeout)), timeout=timeout,
                              what=f"{what} ({selector} to say {contains!r})"))

    # -- acting -------------------------------------------------------------------------------

    def goto(self, url: str) -> None:
        # A mark on the old document tells it from the new one, whichever target holds it.
        try:
            self._eval("window.__uiDriverLeft = true", timeout=5)
        except CdpError:
            pass  # nothing loaded yet (or already leaving): nothing to tell apart
        answer = self._call("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise DriverError(f"could not open {url}: {answer['errorText']}; {self.describe()}")
        if answer.get("loaderId"):  # none for a same-document navigation (a #fragment)
            self._poll(lambda: self._eval("document.readyState === 'complete' && !window.__uiDriverLeft"),
                       timeout=COMMAND_TIMEOUT_S, what=f"{url} to load")

    def click(self, selector: str) -> None:
        point = self._ready(CLICK_POINT_JS, selector, doing=f"clicking {selector}")
        self._mouse_click(float(point["x"]), float(point["y"]))

    def _mouse_click(self, x: float, y: float) -> None:
        # A person's click: the pointer arrives, the left button goes down and comes up.
        self._call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y, "button": "none"})
        for kind, buttons in (("mousePressed", 1), ("mouseReleased", 0)):
            self._call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                    "buttons": buttons, "clickCount": 1})

    def fill(self, selector: str, text: str) -> None:
        field = self._ready(FOCUS_FIELD_JS, selector, doing=f"filling {selector}")
        if text:
            self._call("Input.insertText", {"text": text})  # replaces the selected content
        elif not field.get("empty"):
            self._key("Delete")  # deletes the selected content

    def press(self, selector: str, key: str) -> None:
        if key not in KEYS:
            raise ValueError(f"unknown key {key!r}: one of {', '.join(KEYS)}")
        self._ready(FOCUS_JS, selector, doing=f"pressing {key} in {selector}")
        self._key(key)

    def _key(self, key: str) -> None:
        code, keycode, text = KEYS[key]
        down: dict[str, Any] = {"type": "keyDown" if text else "rawKeyDown", "key": key, "code": code,
                                "windowsVirtualKeyCode": keycode, "nativeVirtualKeyCode": keycode}
        if text:
            down.update(text=text, unmodifiedText=text)
        self._call("Input.dispatchKeyEvent", down)
        self._call("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "code": code,
                                              "windowsVirtualKeyCode": keycode, "nativeVirtualKeyCode": keycode})

    def select(self, selector: str, value: str) -> None:
        self._ready(SELECT_JS, selector, value, doing=f"choosing {value!r} in {selector}")

    def check(self, selector: str, on: bool) -> None:
        if self._read(selector, "checked") != on:
            self.click(selector)
        self._poll(lambda: self._read(selector, "checked") == on, timeout=self._action_timeout,
                   what=f"{selector} to be {'checked' if on else 'unchecked'} after the click")

    def screenshot(self, path: Path) -> Path:
        shot = self._call("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


__all__ = [
    "KEYS",
    "CdpConnection",
    "CdpError",
    "Driver",
    "DriverError",
    "PlaywrightDriver",
    "WindowDriver",
    "devtools_pages",
    "find_page",
]
