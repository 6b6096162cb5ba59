"""Background duties of a desktop session: watching the connection and syncing on schedule.

``ConnectionMonitor`` asks the remote API every ``CHECK_INTERVAL_S`` whether it answers and
whether it takes the API key (a one-record pull), and keeps the latest finding:
``online``; ``offline`` (nothing answers, or the server is down for a while); ``refused``
(the server answers but these settings will not work with it: a wrong key, an address
that is no CraftSync API, a certificate that fails); ``unconfigured``. ``Scheduler`` syncs everything
at launch (when the user wants that), every N minutes (auto-sync), and as soon as the
connection comes back while local changes are waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from craftsync.shell.preferences import PreferenceStore
from craftsync.worker.errors import RemoteError
from craftsync.worker.remote import RemoteClient, RemoteSettings

log = logging.getLogger(__name__)

#: Seconds between health checks of the remote API.
CHECK_INTERVAL_S: Final = 10.0
#: Seconds the scheduler sleeps between looks at the clock and the preferences.
TICK_S: Final = 1.0
#: Seconds before a sync the broker refused is asked for again.
RETRY_S: Final = 15.0


class ConnectionMonitor:
    """The remote API's reachability, checked in a background thread."""

    def __init__(
        self,
        remote: Callable[[], RemoteSettings | None],
        *,
        interval_s: float = CHECK_INTERVAL_S,
        on_change: Callable[[str, str], None] = lambda old, new: None,
    ) -> None:
        self.remote = remote
        self.interval_s = interval_s
        self.on_change = on_change
        self._state: dict[str, Any] = {"state": "unknown", "checked_at": None, "detail": None, "latency_ms": None}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="connection-monitor", daemon=True)

    @property
    def state(self) -> dict[str, Any]:
        return dict(self._state)

    def start(self) -> ConnectionMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def check_soon(self) -> None:
        """Check now instead of waiting for the next interval (e.g. after a settings change)."""
        self._wake.set()

    def check(self) -> dict[str, Any]:
        """One health check; updates and returns the state."""
        settings = self.remote()
        started = time.monotonic()
        if settings is None:
            found = {"state": "unconfigured", "detail": "No remote API is configured."}
        else:
            quick = replace(settings, max_attempts=1, timeout_s=5.0, connect_timeout_s=3.0)
            try:
                with RemoteClient(quick) as client:
                    client.health()
                    client.pull("customers", limit=1)  # proves the key, not just the address
                found = {"state": "online", "detail": None}
                skew = client.clock_skew_s
                if skew is not None and abs(skew) > 120:
                    found["detail"] = f"The server clock differs from this computer's by {skew:.0f} s."
            except RemoteError as exc:
                found = {"state": "refused" if exc.needs_user else "offline", "detail": exc.plain}
        found["latency_ms"] = round((time.monotonic() - started) * 1000)
        found["checked_at"] = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        old = self._state["state"]
        self._state = found
        if old != found["state"]:
            self.on_change(old, found["state"])
        return self.state

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._wake.wait(self.interval_s)
            self._wake.clear()


class Scheduler:
    """Sync on launch, on an interval, and when the connection returns with changes waiting."""

    def __init__(
        self,
        preferences: PreferenceStore,
        request_sync: Callable[[list[str], str, str], str],
        pending: Callable[[], int],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.preferences = preferences
        self.request_sync = request_sync
        self.pending = pending
        self.clock = clock
        self._last = clock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)

    def start(self, *, at_launch: bool = True) -> Scheduler:
        if at_launch and self.preferences.load().sync_on_launch:
            self._sync_all("launch")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def tick(self) -> bool:
        """Sync if auto-sync is on and the interval has passed; returns whether it did."""
        prefs = self.preferences.load()
        if prefs.auto_sync and self.clock() - self._last >= prefs.interval_minutes * 60:
            self._sync_all("schedule")
            return True
        return False

    def connection_changed(self, old: str, new: str) -> None:
        """For ``ConnectionMonitor.on_change``: push what waited while offline."""
        if new == "online" and old in ("offline", "refused", "unconfigured") and self.pending() > 0:
            self._sync_all("reconnect")

    def _sync_all(self, reason: str) -> None:
        prefs = self.preferences.load()
        try:
            self.request_sync([], prefs.default_direction, prefs.conflict_policy)
        except Exception:  # the broker may be briefly away: retry within RETRY_S, not an interval
            log.warning("could not queue the %s sync", reason, exc_info=True)
            self._last = self.clock() - prefs.interval_minutes * 60 + RETRY_S
            return
        self._last = self.clock()

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            self.tick()
