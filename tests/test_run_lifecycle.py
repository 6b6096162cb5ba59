"""``craftsync run`` starts a whole desktop session (embedded broker, demo server, workers, UI
server, monitor, scheduler) and must take all of it down again (spec §3, shell/session.py):
after SIGTERM no process of it is left, no port it listened on is still bound, and the
runtime file that lets other commands find it is gone. Only one session runs per user data
dir: a second ``craftsync run`` says so in one line and exits 1.

No REDIS_URL and no REMOTE_API_URL here: the session starts its own broker and demo server.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from tests.support.e2e import DesktopRun, living, run_env
from tests.support.process import wait_until
from tests.support.worker import CRAFTSYNC

pytestmark = pytest.mark.slow

#: Seconds a SIGTERMed session gets to be gone entirely (the brief: at most 20 s).
STOP_BUDGET_S = 20.0


def listening_ports(pids: set[int]) -> dict[int, int]:
    """{port: pid} of the TCP sockets that ``pids`` listen on."""
    return {c.laddr.port: c.pid for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.pid in pids}


def port_is_free(port: int) -> bool:
    """Whether a new server could listen on 127.0.0.1:``port`` now (TIME_WAIT does not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def start_run(tmp_path: Path, home: Path, name: str = "run") -> DesktopRun:
    return DesktopRun(home, run_env(home), log=tmp_path / f"{name}.log").start()


def test_run_stopped_with_sigterm_leaves_no_process_no_bound_port_and_no_runtime_file_behind(tmp_path: Path) -> None:
    # Given: a running session with everything embedded: broker, demo server, two workers, UI
    home = tmp_path / "home"
    run = start_run(tmp_path, home)
    try:
        runtime = json.loads((home / "runtime.json").read_text())
        expected = {
            "UI server": urlsplit(run.base_url).port,
            "demo server": urlsplit(runtime["remote_url"]).port,
            "embedded broker": urlsplit(runtime["redis_url"]).port,
        }
        assert runtime["pid"] == run.proc.pid  # type: ignore[union-attr]

        def all_listening() -> dict[int, int] | None:
            ports = listening_ports({p.pid for p in run.remember_family()})
            return ports if set(expected.values()) <= set(ports) else None

        ports = wait_until(all_listening, timeout=30, interval=0.2,
                           what=f"the session to listen on {expected}")
        # ... two worker processes under dramatiq's main process, once they are up
        wait_until(lambda: sum("worker" in " ".join(p.cmdline()) for p in run.remember_family()
                               if p.is_running()) >= 3, timeout=30, interval=0.2, what="the worker processes")
        family = {p.pid: " ".join(p.cmdline())[:120] for p in run.remember_family()}
        pids = set(family)
        ports = listening_ports(pids)
        assert len(pids) >= 5, family  # run, broker, demo server, dramatiq + its worker processes

        # When: the session gets SIGTERM
        stopped = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]

        # Then: within 20 s the run exits 0 and every process it started is gone ...
        try:
            code = run.proc.wait(STOP_BUDGET_S)  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            pytest.fail(f"'craftsync run' still running {STOP_BUDGET_S:.0f} s after SIGTERM:\n{run.output()[-3000:]}")
        left = living(pids, grace=max(STOP_BUDGET_S - (time.monotonic() - stopped), 0))
        took = time.monotonic() - stopped
        assert code == 0, run.output()[-3000:]
        assert left == [], f"still running after SIGTERM: {[family[p] for p in left]}"
        # ... every port it listened on is free again ...
        busy = [(port, family.get(pid)) for port, pid in ports.items() if not port_is_free(port)]
        assert busy == [], f"ports still bound: {busy}"
        # ... and the runtime file is gone
        assert not (home / "runtime.json").exists()
        # ... and the workers were stopped, not killed: each got one SIGTERM, from dramatiq
        time.sleep(0.5)  # the output thread drains the last lines
        assert "Killing worker process" not in run.output(), run.output()[-3000:]
        assert "[WARNING]" not in run.output() and "Traceback" not in run.output(), run.output()[-3000:]
        print(f"\n{len(pids)} processes and ports {sorted(ports)} gone {took:.1f} s after SIGTERM")
    finally:
        run.stop()


def test_a_second_run_while_one_is_running_exits_1_with_a_one_line_message(tmp_path: Path) -> None:
    # Given: a running session
    home = tmp_path / "home"
    first = start_run(tmp_path, home, "first")
    try:
        runtime_before = (home / "runtime.json").read_text()

        # When: the user starts the app again with the same user data dir
        second = subprocess.run([*CRAFTSYNC, "run", "--browser"], env=run_env(home), cwd=home,
                                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)

        # Then: it exits 1 with one line saying so (no traceback), and starts nothing
        assert second.returncode == 1, (second.stdout, second.stderr)
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
        assert lines[0].startswith("craftsync: ") and "already running" in lines[0], lines[0]
        assert str(first.proc.pid) in lines[0] and first.base_url in lines[0], lines[0]  # type: ignore[union-attr]
        assert "UI:" not in second.stdout, second.stdout
        # ... and the first session goes on untouched
        assert first.alive()
        assert (home / "runtime.json").read_text() == runtime_before
        secret = first.launch_url.split("token=", 1)[1]
        answer = httpx.get(f"{first.base_url}/api/status", headers={"X-CraftSync-Token": secret}, timeout=10)
        assert answer.status_code == 200
    finally:
        assert first.stop() == 0


def test_stopping_run_while_the_page_follows_progress_prints_no_traceback(tmp_path: Path) -> None:
    # Given: a running session whose page holds its event stream open, as the UI always does
    home = tmp_path / "home"
    run = start_run(tmp_path, home)
    secret = run.launch_url.split("token=", 1)[1]
    connected = threading.Event()

    def follow() -> None:
        try:
            with httpx.stream("GET", f"{run.base_url}/api/events", headers={"X-CraftSync-Token": secret},
                              timeout=httpx.Timeout(5, read=60)) as stream:
                for line in stream.iter_lines():
                    if line.startswith(": connected"):
                        connected.set()
        except httpx.HTTPError:
            pass  # the session went away, as it should

    reader = threading.Thread(target=follow, name="event-stream", daemon=True)
    reader.start()
    try:
        assert connected.wait(15), "the event stream did not open"

        # When: the session gets SIGTERM
        code = run.stop(timeout=STOP_BUDGET_S)

        # Then: it stops cleanly: exit 0 and no traceback in what it printed
        assert code == 0, run.output()[-3000:]
        output = run.output()
        assert "Traceback" not in output, output[output.index("Traceback") - 300:][:4000]
    finally:
        run.stop()
        reader.join(10)
