"""The soak in its CI size (issue 10, item 5): a minute of eight desktops writing and syncing
while workers are killed, Redis and the server restarted and a tenth of the requests broken,
then every desktop syncs until quiet.

It runs ``tests/bench/soak.py`` as a person would, in a process of its own, and reads the
figures it writes: every check passed (converged, nothing lost, no invented conflicts,
memory flat, no run left running) and every kind of fault was really injected.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import POSTGRES_ADMIN_URL, service_missing
from tests.support.process import ROOT, clean_env

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(900)]

SOAK = ROOT / "tests" / "bench" / "soak.py"
#: The faults, setup and settling of a one-minute soak take a few minutes here.
SOAK_TIMEOUT_S = 840


def postgres_answers() -> None:
    engine = create_engine(POSTGRES_ADMIN_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means: no usable server here
        service_missing(f"PostgreSQL is not reachable: {type(exc).__name__}")
    finally:
        engine.dispose()


def test_a_minute_of_crashes_restarts_and_broken_requests_ends_converged_with_nothing_lost(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        service_missing("redis-server is not installed (apt-get install redis-server)")
    postgres_answers()
    figures_file = tmp_path / "soak.json"

    soak = subprocess.run(
        [sys.executable, str(SOAK), "--minutes", "1", "--json", str(figures_file), "--workdir", str(tmp_path / "work")],
        env=clean_env(tmp_path / "home", CRAFTSYNC_BENCH_POSTGRES_URL=POSTGRES_ADMIN_URL), cwd=ROOT,
        capture_output=True, text=True, timeout=SOAK_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)

    assert figures_file.exists(), f"the soak wrote no figures (exit {soak.returncode}):\n{soak.stderr[-3000:]}"
    figures = json.loads(figures_file.read_text())
    failed = {name: check["problems"] for name, check in figures["checks"].items() if not check["passed"]}
    assert not failed, f"checks failed: {failed}\n{soak.stdout}"
    assert soak.returncode == 0, soak.stdout + soak.stderr[-3000:]
    faults, proxy = figures["faults"], figures["proxy"]
    assert {"worker killed", "broker killed", "broker shut down", "server killed", "server shut down"} <= faults.keys(), faults
    assert {"refused", "dropped", "answer lost"} <= proxy.keys(), proxy
    assert figures["records"]["created"] > 0 and figures["settle"]["quiet"], figures["settle"]
