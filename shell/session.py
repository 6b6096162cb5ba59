"""``craftsync run``: one desktop session, from the broker to the window, and back down.

Start order: the broker (embedded unless ``REDIS_URL`` is set), the remote API (the demo
server unless one is configured), the worker processes, the UI server on a free loopback
port, the connection monitor and the scheduler, then the window (or the browser). Stop
order is the reverse; every process started is stopped, with its children, and the
runtime file that lets other ``craftsync`` commands find this session is removed.

While the session runs, ``shell/supervisor.py`` watches the broker, the demo server and the
workers, and restarts one that dies. Around each restart the session recovers what it lost:
a restarted embedded broker comes back on the same port and password but empty, so the
requests still waiting are queued again; after the workers died, the runs they left
"running" end as failed with the reason and are tried again (at most ``MAX_RUN_RETRIES``
times), and the waiting requests are queued again too (a dead worker may hold their message).
What happened goes into the runtime file, for the UI's status and ``craftsync status``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any, Final

import psutil
import redis
import tenacity
import waitress
from dramatiq.brokers.redis import RedisBroker

from craftsync.contract.records import ENTITIES, now_iso
from craftsync.contract.vocabulary import EventType
from craftsync.shell.broker import EmbeddedBroker
from craftsync.shell.errors import SessionError
from craftsync.shell.preferences import PreferenceStore
from craftsync.shell.remote_choice import Demo, RemoteChoice, choose_remote
from craftsync.shell.scheduler import ConnectionMonitor, Scheduler
from craftsync.shell.supervisor import UNNAMED, RunLedger, Supervisor, Watched, family_alive
from craftsync.shell.ui_server import UiContext, create_ui_app
from craftsync.shell.window import LAUNCH_PAGE
from craftsync.worker.broker import wait_for_broker
from craftsync.worker.errors import BrokerUnavailable, ConfigurationError, SyncError
from craftsync.worker.events import Publisher
from craftsync.worker.queue import request_sync, sync_order
from craftsync.worker.remote import RemoteClient, RemoteSettings
from craftsync.worker.settings import Settings, data_dir, make_private, read_runtime, runtime_file
from craftsync.worker.store import LocalStore

log = logging.getLogger(__name__)

#: Seconds a started process gets to answer (demo server health) before start-up fails.
START_TIMEOUT_S: Final = 30.0
#: Seconds a process gets to stop after SIGTERM before it is killed.
STOP_TIMEOUT_S: Final = 10.0
#: A worker whose last heartbeat is older than this is taken for gone (dramatiq beats about
#: every second while it waits for messages).
WORKER_HEARTBEAT_S: Final = 30.0
#: Threads of the UI server: each open event stream holds one.
UI_THREADS: Final = 16
#: How often one request's runs are tried again after the workers died under them.
MAX_RUN_RETRIES: Final = 2
#: What the user calls the supervised processes, to begin a sentence.
SYNC_SERVICE: Final = "The sync service"
DEMO_SERVER: Final = "The demo server"


class Session:
    """Everything ``craftsync run`` starts, and how to stop it again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.preferences = PreferenceStore(data_dir())
        self.secret = secrets.token_urlsafe(32)
        self.broker: EmbeddedBroker | None = None
        self.redis_url = settings.redis_url or ""
        self.demo: Demo | None = None
        self._demo_process: subprocess.Popen[bytes] | None = None
        self.workers: subprocess.Popen[bytes] | None = None
        #: The workers' dramatiq parent and every worker process of it seen so far.
        self._worker_family: list[psutil.Process] = []
        #: Held while the workers are replaced on purpose, so that supervision does not step in.
        self._workers_lock = threading.RLock()
        self._broker_process: psutil.Process | None = None
        self.supervisor = Supervisor(on_change=self._write_runtime)
        self.ledger: RunLedger | None = None
        self._runtime_lock = threading.Lock()
        self.ui_server: Any = None
        self.ui_url = ""
        self.monitor: ConnectionMonitor | None = None
        self.scheduler: Scheduler | None = None
        self._remote_in_use: RemoteSettings | None = None
        #: Failed runs that ended before this time no longer make the status "Sync error".
        self.errors_cleared_at = ""
        self._stopped = threading.Event()

    # -- start ----------------------------------------------------------------------------

    def start(self) -> Session:
        running = read_runtime()
        if running:
            raise SessionError(f"CraftSync is already running (pid {running['pid']}); its UI is at {running.get('ui_url')}")
        try:
            make_private(data_dir())  # settings, the demo database and the runtime file live here
            LocalStore(self.settings.database).close()  # create or upgrade the schema once, here
            self._start_broker()
            self._start_remote()
            self._start_workers()
            self._start_ui()
            self._start_background()
            self._write_runtime()
            self._supervise()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_broker(self) -> None:
        if not self.redis_url:
            self.broker = EmbeddedBroker().start()
            self.redis_url = self.broker.url
        try:  # an external broker may be starting beside us (the Procfile): wait for it, until stopped
            wait_for_broker(self.redis_url, say=lambda line: print(f"craftsync: {line}", file=sys.stderr, flush=True),
                            stop=tenacity.stop_when_event_set(self._stopped))
        except BrokerUnavailable as exc:
            raise SessionError(f"cannot reach the broker: {exc.reason}") from exc
        self._redis = redis.Redis.from_url(self.redis_url)
        self._dramatiq = RedisBroker(url=self.redis_url)
        self._publish = Publisher(self._redis)
        self.ledger = RunLedger(self.redis_url).start()
        self._broker_process = _handle(self.broker.pid) if self.broker else None

    def _restart_broker(self) -> None:
        """The embedded broker again, on the same port and password (so that every client
        finds it where it was); it comes back empty."""
        assert self.broker is not None
        where = urlsplit(self.redis_url)
        self.broker.stop()
        self.broker = EmbeddedBroker(port=where.port, password=where.password).start()
        self._broker_process = _handle(self.broker.pid)

    def _start_remote(self) -> None:
        """Start the demo server when no remote address is configured (and none runs yet)."""
        if self.settings.remote_url or self.preferences.load().remote_url or self.demo is not None:
            return
        port, key = _free_port(), secrets.token_urlsafe(24)
        demo = Demo(url=f"http://127.0.0.1:{port}/api", key=key)
        self._spawn_demo(demo)
        self.demo = demo
        self._supervise_demo()

    def _spawn_demo(self, demo: Demo) -> None:
        """Run the demo server at ``demo``'s address with its key; return once it answers."""
        port = str(urlsplit(demo.url).port)
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{data_dir() / 'demo-central.db'}", "API_KEYS": demo.key}
        env.pop("REDIS_URL", None)
        process = _spawn([sys.executable, "-m", "craftsync.shell.cli", "server", "--demo", "--port", port], env)
        self._demo_process = process
        _wait_healthy(demo, process)

    def choice(self) -> RemoteChoice:
        """The remote address and key in force: the environment's, else the saved ones, else
        the demo server's."""
        return choose_remote(
            env_url=self.settings.remote_url,
            env_key=self.settings.remote_key,
            prefs=self.preferences.load(),
            saved_key=self.preferences.api_key(),
            demo=self.demo,
        )

    def remote(self) -> RemoteSettings | None:
        """The remote API in force, or None when an address or a key is missing."""
        return self._settings_of(self.choice())

    def _settings_of(self, choice: RemoteChoice) -> RemoteSettings | None:
        if not (choice.url and choice.key):
            return None
        try:
            return RemoteSettings(base_url=choice.url, api_key=choice.key, verify=self.settings.ca_bundle or True)
        except ConfigurationError:
            return None

    def sync_blocker(self) -> str | None:
        """Why a sync asked for now could not run, in one sentence with what to do; None if it can."""
        choice = self.choice()
        if not choice.url:
            return "Sync is not set up yet: enter the server address and its API key in Settings."
        if not choice.key:
            return f"There is no API key for {choice.url}: enter it in Settings."
        if self._settings_of(choice) is None:
            return f"The server address {choice.url} cannot be used: correct it in Settings."
        if (down := self.supervisor.gave_up("broker", "workers")) is not None:
            return down
        if self.settings.workers and self.workers is None:
            return "The sync service is not running: close CraftSync and start it again."
        if not self.settings.workers and not _worker_alive(self._redis, besides=self._dramatiq.broker_id):
            # Queued now, the request would wait unseen, and the embedded broker forgets it at exit.
            return "No sync worker is running (CRAFTSYNC_WORKERS is 0): start one with 'craftsync worker'."
        return None

    def _start_workers(self) -> None:
        remote = self._remote_in_use = self.remote()
        if self.settings.workers == 0:
            return
        env = {**os.environ, **self.settings.to_env(), "REDIS_URL": self.redis_url}
        if remote is not None:
            env.update(REMOTE_API_URL=remote.base_url, REMOTE_API_KEY=remote.api_key)
        argv = [sys.executable, "-m", "craftsync.shell.cli", "worker", "--processes", str(self.settings.workers)]
        self.workers = _spawn(argv, env) if remote is not None else None
        self._worker_family = [_handle(self.workers.pid)] if self.workers else []

    def _settings_changed(self) -> None:
        """Apply changed settings: a cleared address brings the demo server back; the workers
        restart only when what they use (the remote URL and key) changed."""
        self.errors_cleared_at = now_iso()  # an old "Sync error" is not about the new settings
        try:
            self._start_remote()
        except SessionError as exc:
            log.warning("the demo server could not start: %s", exc)
        if self.remote() != self._remote_in_use:
            self.restart_workers()

    def restart_workers(self) -> None:
        """Apply changed settings (remote URL, key) to the workers."""
        with self._workers_lock:
            if self.workers is not None:
                _stop_tree(self.workers)
                self.workers = None
            self._start_workers()
        self.supervisor.revive("workers")  # started anew: watched again, even if it was left down
        if self.monitor:
            self.monitor.check_soon()

    def request(self, entities: list[str], direction: str, policy: str, request_id: str | None = None) -> str:
        """Queue a sync of ``entities`` (none: all); every event of the runs serving it lists
        ``request_id``, so that whoever asked can follow them. Returns the first run's id."""
        order = sync_order(entities)
        if request_id and self.ledger is not None:  # noted first: its events may come at once
            self.ledger.queued(request_id, order, direction, policy)
        run_id = request_sync(self._dramatiq, self._redis, order, direction=direction, policy=policy,
                              requests=[request_id] if request_id else None)
        if not request_id and self.ledger is not None:
            self.ledger.queued_run(run_id, order, direction, policy)
        return run_id

    def ui_context(self, *, port: int = 0) -> UiContext:
        """What the UI server is given of this session: its secret, local file and preferences,
        the remote in force, the connection monitor's latest finding, its sync requests and
        what blocks them. ``_start_ui`` serves the app built on it; the UI tests build theirs
        from it, on a session whose broker and workers they provide."""
        return UiContext(
            secret=self.secret,
            database=self.settings.database,
            redis_url=self.redis_url,
            preferences=self.preferences,
            remote=self.remote,
            remote_url_locked=bool(self.settings.remote_url),
            connection=lambda: self.monitor.state if self.monitor else {"state": "unknown"},
            request_sync=self.request,
            on_settings_changed=self._settings_changed,
            choice=self.choice,
            sync_blocker=self.sync_blocker,
            errors_cleared_at=lambda: self.errors_cleared_at,
            service=self.supervisor.report,
            port=port,
        )

    def _start_ui(self) -> None:
        ctx = self.ui_context()
        app = create_ui_app(ctx)
        self.ui_server = waitress.create_server(app, host="127.0.0.1", port=0, threads=UI_THREADS, send_bytes=1)
        ctx.port = self.ui_server.effective_port
        self._ui_thread = threading.Thread(target=self.ui_server.run, name="ui-server", daemon=True)
        self._ui_thread.start()
        self.ui_url = f"http://127.0.0.1:{ctx.port}/"

    def _start_background(self) -> None:
        self.scheduler = Scheduler(self.preferences, self.request, self._pending)
        self.monitor = ConnectionMonitor(self.remote, on_change=self._connection_changed).start()
        self.scheduler.start(at_launch=True)

    def _connection_changed(self, old: str, new: str) -> None:
        if new == "online" and old != "unknown":  # back, or fixed: earlier failures are history
            self.errors_cleared_at = now_iso()
        if self.scheduler is not None:
            self.scheduler.connection_changed(old, new)

    def _pending(self) -> int:
        with LocalStore(self.settings.database, migrate_schema=False) as store:
            return sum(store.counts(e)["pending"] for e in ENTITIES)

    def _write_runtime(self) -> None:
        remote = self.remote()
        data = {
            "pid": os.getpid(),
            "ui_url": self.ui_url,
            "redis_url": self.redis_url,
            "database": str(self.settings.database),
            "remote_url": remote.base_url if remote else None,
            "remote_key": remote.api_key if remote else None,
            "service": self.supervisor.report(),
        }
        path = runtime_file()
        with self._runtime_lock:
            if self._stopped.is_set() or not self.ui_url:
                return  # not yet started, or already stopped: no runtime file to (re)write
            path.parent.mkdir(parents=True, exist_ok=True)
            fresh = path.with_suffix(".new")  # written whole, then renamed: a reader never sees half
            fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle)
            os.replace(fresh, path)

    @property
    def launch_url(self) -> str:
        """The address the window opens: it carries the per-launch secret."""
        return f"{self.ui_url}?token={self.secret}"

    # -- supervision ----------------------------------------------------------------------

    def _supervise(self) -> None:
        """Watch the embedded broker and the workers (the demo server is watched from its start)."""
        if self._broker_process is not None:
            self.supervisor.watch("broker", Watched(
                label=SYNC_SERVICE, alive=self._broker_alive, start=self._restart_broker,
                recover=self._requeue_waiting))
        if self.settings.workers:
            self.supervisor.watch("workers", Watched(
                label=SYNC_SERVICE, alive=self._workers_alive, start=self._restart_dead_workers,
                clean_up=self._clear_dead_workers, recover=self._requeue_waiting))

    def _broker_alive(self) -> bool:
        return self._broker_process is not None and family_alive([self._broker_process])

    def _supervise_demo(self) -> None:
        demo = self.demo
        if demo is None or "demo server" in self.supervisor.watched:
            return

        def alive() -> bool:
            return self._demo_process is not None and self._demo_process.poll() is None

        def clean_up() -> None:
            if self._demo_process is not None:
                _stop_tree(self._demo_process)

        self.supervisor.watch("demo server", Watched(
            label=DEMO_SERVER, alive=alive, start=lambda: self._spawn_demo(demo), clean_up=clean_up))

    def _workers_alive(self) -> bool:
        """Whether dramatiq's parent and every worker process it started still run (a worker's
        death makes the parent stop the others and exit, after a while)."""
        with self._workers_lock:
            if self.workers is None:
                return True  # none to run (no remote yet): nothing has died
            family = self._worker_family
            if not family_alive(family):
                return False
            try:
                seen = {p.pid for p in family}
                family += [p for p in family[0].children(recursive=True) if p.pid not in seen]
            except psutil.NoSuchProcess:
                return False
            return True

    def _clear_dead_workers(self) -> None:
        """Stop what is left of the dead workers' family, then end each run they left running
        as failed, saying why, and queue it again."""
        with self._workers_lock:
            family = self._worker_family
            if self.workers is not None:  # with the worker processes it forked before they were seen
                seen = {p.pid for p in family}
                family = family + [p for p in _process_group(self.workers.pid) if p.pid not in seen]
            _stop_family(family)
            if self.workers is not None:
                self.workers.poll()
        stopped = f"The sync service stopped during this sync at {time.strftime('%H:%M')} and was restarted"
        with LocalStore(self.settings.database, migrate_schema=False) as store:
            for row in store.runs.running():  # no worker runs now: each of these was interrupted
                run, rest = self.ledger.orphaned(row["run_id"]) if self.ledger else (None, [])
                requests = run.requests if run else []
                again = self._may_retry(row["entity"], requests)
                reason = f"{stopped}; the sync is tried again." if again else f"{stopped}."
                store.runs.end_interrupted(row["run_id"], reason)
                self._publish_failed(row, reason, requests)
                if again:
                    self._queue_retry(row, sync_order([row["entity"], *rest]), requests)

    def _may_retry(self, entity: str, requests: list[str]) -> bool:
        """Whether an interrupted run of ``entity`` serving ``requests`` is tried again: at most
        MAX_RUN_RETRIES times per request (a request given up on is no longer recovered)."""
        if self.ledger is None or self.ledger.count_retry(entity, requests) <= MAX_RUN_RETRIES:
            return True
        self.ledger.forget(requests)
        return False

    def _publish_failed(self, row: dict[str, Any], reason: str, requests: list[str]) -> None:
        """Tell whoever follows the interrupted run (the page, ``craftsync sync --wait``) how it ended."""
        event = {"type": EventType.FAILED.value, "run_id": row["run_id"], "entity": row["entity"],
                 "direction": row["direction"], "status": "failed", "error": reason, "requests": requests,
                 "done": 0, "total": 0, "pushed": row["pushed"] or 0, "pulled": row["pulled"] or 0,
                 "conflicts": row["conflicts"] or 0, "rate": 0, "eta_s": 0, "ts": now_iso()}
        try:
            self._publish(event)
        except redis.RedisError as exc:
            log.warning("the end of the interrupted %s run could not be told: %s", row["entity"], exc)

    def _queue_retry(self, row: dict[str, Any], entities: list[str], requests: list[str]) -> None:
        direction, policy = row["direction"], row["policy"]
        try:
            if requests:
                request_sync(self._dramatiq, self._redis, entities, direction=direction, policy=policy,
                             requests=requests)
            else:  # a request without an id (the scheduler's): noted anew, as such a request is
                self.request(entities, direction, policy)
        except redis.RedisError as exc:
            log.warning("the interrupted %s run could not be queued again: %s", row["entity"], exc)

    def _restart_dead_workers(self) -> None:
        with self._workers_lock:
            self._start_workers()

    def _requeue_waiting(self) -> None:
        """Queue again every request of this session still waiting for its runs: joining a
        waiting run that is still there adds only a message, so nothing runs twice."""
        if self.ledger is None:
            return
        for key, request, entities in self.ledger.waiting():
            if not entities:
                continue
            if key.startswith(UNNAMED):  # known by its lost run's id: it becomes a new run
                self.ledger.forget([key])
                self.request(entities, request.direction, request.policy)
            else:
                request_sync(self._dramatiq, self._redis, entities, direction=request.direction,
                             policy=request.policy, requests=[key])

    # -- stop -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything this session started; safe to call more than once."""
        if self._stopped.is_set():
            return
        with self._runtime_lock:
            self._stopped.set()
        self.supervisor.stop()
        for part in (self.scheduler, self.monitor, self.ledger):
            if part is not None:
                part.stop()
        if self.ui_server is not None:
            _close_server(self.ui_server, self._ui_thread)
        for process in (self.workers, self._demo_process):
            if process is not None:
                _stop_tree(process)
        if self.broker is not None:
            self.broker.stop()
        runtime = runtime_file()
        try:
            if json.loads(runtime.read_text()).get("pid") == os.getpid():
                runtime.unlink()
                (data_dir() / LAUNCH_PAGE).unlink(missing_ok=True)  # the browser's launch page: its secret is dead
        except (OSError, ValueError):
            pass

    def wait(self) -> None:
        """Block until ``stop`` is called (browser mode)."""
        self._stopped.wait()


def _worker_alive(client: redis.Redis, *, besides: str) -> bool:
    """Whether a dramatiq worker used this broker lately: a fresh heartbeat other than the one
    of ``besides`` (every broker that enqueues beats too, this session's own included)."""
    since_ms = time.time() * 1000 - WORKER_HEARTBEAT_S * 1000
    fresh = client.zrangebyscore("dramatiq:__heartbeats__", since_ms, "+inf")
    return any(member.decode() != besides for member in fresh)


def _handle(pid: int | None) -> psutil.Process | None:
    """A handle on process ``pid`` that knows it from a later process given the same pid."""
    if pid is None:
        return None
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def _process_group(leader: int) -> list[psutil.Process]:
    """The processes of the process group ``leader`` made (``_spawn`` gives each child its own),
    even those its death left orphaned. The group's id is not given to another process while
    one of them lives. Empty where there are no process groups (Windows)."""
    if not hasattr(os, "getpgid"):
        return []
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == leader:
                members.append(process)
        except (OSError, psutil.Error):
            continue  # gone meanwhile
    return members


def _stop_family(family: list[psutil.Process]) -> None:
    """Stop what is left of a process family whose parent or a member died: a living parent is
    stopping its children itself (give it the time), else SIGTERM the living children once;
    SIGKILL whatever is still there after STOP_TIMEOUT_S."""
    living = [p for p in family if family_alive([p])]
    if family and family[0] not in living:
        for member in living:
            try:
                member.terminate()
            except psutil.NoSuchProcess:
                pass
    _kill_after_timeout(living)


def _kill_after_timeout(family: list[psutil.Process]) -> None:
    """Wait STOP_TIMEOUT_S for a family told to stop, then SIGKILL whatever is still there."""
    _, alive = psutil.wait_procs(family, timeout=STOP_TIMEOUT_S)
    for member in alive:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=STOP_TIMEOUT_S)


def _close_server(server: Any, thread: threading.Thread) -> None:
    """Stop waitress from its own loop thread: closing its sockets from another thread races
    its select() (EBADF). Open event streams end with their connections."""

    def close_all() -> None:
        for channel in list(server._map.values()):
            channel.close()

    server.trigger.pull_trigger(close_all)
    thread.join(timeout=STOP_TIMEOUT_S)
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A child in its own process group, so that stopping it reaches its children too."""
    return subprocess.Popen(argv, env=env, start_new_session=True, stdin=subprocess.DEVNULL, cwd=Path.cwd(),
                            umask=0o077)  # what it writes (the demo database, logs) is the user's only


def _stop_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process, which stops its own children (dramatiq's parent forwards the signal:
    sending it to the children as well would be their second one, which kills them mid-run),
    then SIGKILL whatever of the family is still there."""
    try:
        parent = psutil.Process(process.pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    try:
        parent.terminate()
    except psutil.NoSuchProcess:
        pass
    _kill_after_timeout(family)
    process.poll()


def _wait_healthy(demo: Demo, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    settings = RemoteSettings(base_url=demo.url, api_key=demo.key, timeout_s=1.0, max_attempts=1)
    with RemoteClient(settings) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SessionError(f"the demo server exited at start (code {process.returncode})")
            try:
                client.health()
                return
            except SyncError:
                pass  # not listening yet
            time.sleep(0.1)
    raise SessionError(f"the demo server did not answer within {START_TIMEOUT_S:.0f} s")
