"""Processes and services shared by the tests and the benchmarks (``tests/bench/``).

The ``craftsync`` command, free loopback ports, a child process in a session of its own and
how to stop it with all its children, ``craftsync server`` on a port and waited on until
``/api/health`` answers, a Redis database claimed so that concurrent test runs and
benchmarks never share one, and the workers' events channel on it.

Plain functions and classes, importable without pytest: a wait that times out (or a service
that dies) calls ``fail`` with a message, which fails the test under pytest and raises
``RuntimeError`` elsewhere by default; helpers pass their own to add what they see.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

import httpx
import psutil
import redis

from craftsync.worker.events import channel

ROOT: Final = Path(__file__).resolve().parents[2]  # tests/support/process.py -> the project
#: The console script of the project installed in .venv.
CRAFTSYNC_SCRIPT: Final = ROOT / ".venv" / "bin" / "craftsync"
#: The command: the console script when the project is installed in .venv, else the module.
CRAFTSYNC: Final = (
    [str(CRAFTSYNC_SCRIPT)] if CRAFTSYNC_SCRIPT.exists() else [sys.executable, "-m", "craftsync.shell.cli"]
)
#: Environment variables that must not leak from the developer's shell into the processes.
OWN_VARIABLES: Final = ("REDIS_URL", "REMOTE_API_URL", "REMOTE_API_KEY", "CRAFTSYNC_DB", "CRAFTSYNC_WORKERS",
                        "CRAFTSYNC_CA_BUNDLE", "CRAFTSYNC_HOME", "DATABASE_URL", "API_KEYS", "RATE_LIMIT",
                        "TRUSTED_PROXY", "FAILED_AUTH_LIMIT", "OPEN_LIMIT", "CRAFTSYNC_ALLOW_PLAIN_HTTP")
#: The key by which a test or a benchmark claims a Redis database number, and for how long
#: at most (in case it dies without cleaning up).
CLAIM_KEY: Final = "craftsync-test:claim"
CLAIM_TTL_S: Final = 900
#: A dramatiq heartbeat younger than this means another worker uses that database.
LIVE_HEARTBEAT_MS: Final = 60_000

#: What a failed wait calls with its message; it must raise.
Fail = Callable[[str], NoReturn]


def raise_error(message: str) -> NoReturn:
    """The default ``fail``: ``pytest.fail`` in a pytest run (the test fails, even where it
    catches ``Exception``), else a ``RuntimeError`` with ``message`` (the benchmarks)."""
    if "pytest" in sys.modules:
        sys.modules["pytest"].fail(message)
    raise RuntimeError(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.05, what: str = "condition",
               fail: Fail = raise_error, passing: tuple[type[Exception], ...] = ()) -> Any:
    """Poll ``predicate`` until it returns something true (returned); after ``timeout`` s call
    ``fail`` with a message naming ``what``. A ``passing`` exception from ``predicate`` only
    means "not yet" (the message then quotes the last one).

    The suite's one wait: every waiting helper (the drivers, the pages, the event log) calls it."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            value = predicate()
        except passing as exc:
            text = str(exc).strip()
            last = f" (last attempt: {text.splitlines()[0] if text else type(exc).__name__})"
        else:
            if value:
                return value
        if time.monotonic() > deadline:
            fail(f"timed out after {timeout:g} s waiting for {what}{last}")
        time.sleep(interval)


def clean_env(home: Path, **variables: str) -> dict[str, str]:
    """The environment for a child process: ours without CraftSync's settings, plus ``variables``.

    ``CRAFTSYNC_HOME`` points at ``home`` so that no running ``craftsync run`` is found."""
    env = {k: v for k, v in os.environ.items() if k not in OWN_VARIABLES}
    env.update(CRAFTSYNC_HOME=str(home), PYTHONUNBUFFERED="1", **variables)
    return env


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ("" when it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- stopping processes ----------------------------------------------------------------------


def living(pids: set[int], *, grace: float = 0.0) -> list[int]:
    """Which of ``pids`` are alive (zombies count as gone), after up to ``grace`` s for them to go."""
    deadline = time.monotonic() + grace
    while True:
        alive = []
        for pid in sorted(pids):
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def kill_pids(pids: set[int]) -> None:
    """SIGKILL every process of ``pids`` that is still alive (pids checked by psutil identity)."""
    for pid in pids:
        try:
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE:
                process.kill()
        except psutil.NoSuchProcess:
            pass


def signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    """Send ``sig`` to the process group that ``proc`` leads (nothing if it is gone)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def stop_group(proc: subprocess.Popen[Any], *, timeout: float) -> None:
    """SIGTERM a process started with ``start_new_session``, then SIGKILL its group and children."""
    try:
        family = {proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))}
    except psutil.NoSuchProcess:
        family = {proc.pid}
    signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    signal_group(proc, signal.SIGKILL)
    kill_pids(family)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


class Service:
    """A child process in a session (process group) of its own, its output in a log file."""

    def __init__(self, argv: list[str], *, env: dict[str, str], log: Path, cwd: Path) -> None:
        self.log = log
        cwd.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the process and every child of it, as a crash or a power cut would."""
        signal_group(self.proc, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, *, timeout: float = 10) -> None:
        """SIGTERM, then after ``timeout`` s SIGKILL whatever is left of the group and its children."""
        stop_group(self.proc, timeout=timeout)

    def tail(self, lines: int = 30) -> str:
        return tail(self.log, lines)


def start_server(env: dict[str, str], *, port: int, log: Path, cwd: Path, timeout: float = 30,
                 name: str = "the server", fail: Fail = raise_error) -> Service:
    """``craftsync server`` on ``127.0.0.1:port`` with ``env``, once its ``/api/health`` answers.

    ``fail`` is called if it exits first or does not answer within ``timeout`` s (the
    process is stopped then)."""
    service = Service([*CRAFTSYNC, "server", "--host", "127.0.0.1", "--port", str(port)], env=env, log=log,
                      cwd=cwd)
    health = f"http://127.0.0.1:{port}/api/health"

    def healthy() -> bool:
        if not service.alive():
            fail(f"{name} exited with {service.proc.returncode}:\n{service.tail()}")
        try:
            return httpx.get(health, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout=timeout, interval=0.1, what=f"{name}'s /api/health", fail=fail)
    except BaseException:  # pytest.fail raises a BaseException
        service.stop()
        raise
    return service


# -- Redis -----------------------------------------------------------------------------------


@dataclass
class RedisDB:
    """One Redis database number of our own (``token`` is our claim on it, "" for none)."""

    number: int
    url: str
    client: redis.Redis
    token: str = ""
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def keep_claim(self) -> None:
        """Renew the claim every minute until ``release`` (for runs that may outlast CLAIM_TTL_S)."""
        def renew() -> None:
            while not self._stop.wait(60):
                self.client.set(CLAIM_KEY, self.token, ex=CLAIM_TTL_S)

        threading.Thread(target=renew, name=f"claim-db{self.number}", daemon=True).start()

    def release(self, *, only_if_claimed: bool = False) -> None:
        """Flush the database and close the client; with ``only_if_claimed``, flush only if
        the claim is still ours."""
        self._stop.set()
        if not only_if_claimed or self.client.get(CLAIM_KEY) == self.token.encode():
            self.client.flushdb()
        self.client.close()


def in_use_by_workers(client: redis.Redis) -> bool:
    """Whether a dramatiq worker has fetched from this database within LIVE_HEARTBEAT_MS."""
    newest: list[tuple[bytes, float]] = client.zrevrange("dramatiq:__heartbeats__", 0, 0, withscores=True)  # type: ignore[assignment]
    return bool(newest) and time.time() * 1000 - newest[0][1] < LIVE_HEARTBEAT_MS


def claim_redis_db(host: str, port: int, numbers: Iterable[int], *, fail: Fail = raise_error) -> RedisDB:
    """The first database of ``numbers`` that nobody has claimed and no worker uses: claimed
    (CLAIM_KEY, for CLAIM_TTL_S) and flushed. Release it with ``RedisDB.release``."""
    token = secrets.token_hex(16)
    tried = list(numbers)
    for number in tried:
        client = redis.Redis(host=host, port=port, db=number)
        if client.set(CLAIM_KEY, token, nx=True, ex=CLAIM_TTL_S) and not in_use_by_workers(client):
            break
        if client.get(CLAIM_KEY) == token.encode():
            client.delete(CLAIM_KEY)
        client.close()
    else:
        fail(f"every Redis database of {tried} is claimed (by other tests or a benchmark) or used by workers")
    client.flushdb()
    client.set(CLAIM_KEY, token, ex=CLAIM_TTL_S)
    return RedisDB(number, f"redis://{host}:{port}/{number}", client, token)


class EventLog:
    """Every event on the events channel of ``client``'s database from subscription on,
    collected by a thread: ``events`` and, at the same index, the monotonic time each arrived."""

    def __init__(self, client: redis.Redis, *, fail: Fail = raise_error) -> None:
        self.events: list[dict[str, Any]] = []
        self.arrived: list[float] = []
        self.fail = fail
        self._changed = threading.Condition()
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(channel(client))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="event-log", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if message is None or message["type"] != "message":
                continue
            arrived = time.monotonic()
            try:
                event = json.loads(message["data"])
            except ValueError:
                continue
            with self._changed:
                self.events.append(event)
                self.arrived.append(arrived)
                self._changed.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float, what: str) -> dict[str, Any]:
        """The first event (seen so far or arriving) for which ``predicate`` holds."""
        seen = 0

        def found() -> dict[str, Any] | None:
            nonlocal seen
            with self._changed:
                events = self.events[seen:]
            seen += len(events)
            return next((event for event in events if predicate(event)), None)

        def fail(message: str) -> NoReturn:
            with self._changed:
                last = self.events[-3:]
            self.fail(f"{message}; last events: {last}")

        event: dict[str, Any] = wait_until(found, timeout=timeout, interval=0.02, what=what, fail=fail)
        return event

    def of(self, run_ids: set[str]) -> list[dict[str, Any]]:
        with self._changed:
            return [e for e in self.events if e.get("run_id") in run_ids]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()
