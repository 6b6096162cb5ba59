"""`schemathesis run --checks all` finds nothing wrong with the API, every phase included.

A real ``craftsync server`` on a free loopback port with a SQLite database and an API key;
schemathesis reads its /api/openapi.json and runs the examples, coverage, fuzzing and
stateful phases with every check it has: among them that a request the document allows is
accepted and one it forbids is refused, that 405 answers carry Allow, and that a record just
created can be read back. ``tests/schemathesis/`` holds the run's configuration and one
check of our own (see its comments).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.api import API_KEY
from tests.support.process import clean_env, free_port, start_server

PROJECT = Path(__file__).resolve().parents[1]
#: The schemathesis command installed beside the interpreter running the tests.
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CONFIG_DIR = Path(__file__).parent / "schemathesis"
#: Examples per operation and the fixed seed: enough to find every mismatch fixed so far,
#: in about a minute; set CRAFTSYNC_SCHEMATHESIS_SEED to try another seed.
MAX_EXAMPLES = 50
SEED = os.environ.get("CRAFTSYNC_SCHEMATHESIS_SEED", "1")


@pytest.mark.timeout(300)
def test_schemathesis_with_every_check_and_phase_reports_no_failure(tmp_path: Path) -> None:
    # Given the server on a new SQLite database, with a rate limit no run can reach
    port = free_port()
    env = clean_env(
        tmp_path / "home",
        DATABASE_URL=f"sqlite:///{tmp_path / 'central.db'}",
        API_KEYS=API_KEY,
        RATE_LIMIT="1000000/minute",
    )
    server = start_server(env, port=port, log=tmp_path / "server.log", cwd=tmp_path, fail=pytest.fail)
    try:
        # When schemathesis runs every check in every phase against its document
        run = subprocess.run(
            [
                str(SCHEMATHESIS), "--config-file", str(CONFIG_DIR / "schemathesis.toml"), "--no-color",
                "run", f"http://127.0.0.1:{port}/api/openapi.json",
                "--checks", "all",
                "--phases", "examples,coverage,fuzzing,stateful",
                "--header", f"Authorization: Bearer {API_KEY}",
                "--max-examples", str(MAX_EXAMPLES),
                "--seed", SEED,
                "--workers", "1",
                "--request-timeout", "10",
            ],
            env={**env, "SCHEMATHESIS_HOOKS": "tests.schemathesis.hooks", "PYTHONPATH": str(PROJECT)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=280,
        )
    finally:
        server.stop()

    # Then it exits 0, and its summary reports no failure and no error
    summary = run.stdout[run.stdout.rfind("SUMMARY"):] if "SUMMARY" in run.stdout else run.stdout[-3000:]
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-3000:]
    assert "failure" not in summary.lower() and "error" not in summary.lower(), summary
    assert "Stateful" in run.stdout, "the stateful phase did not run:\n" + run.stdout[-3000:]
