"""Server processes started at the same moment on a new database all come up.

Each one migrates the schema on start (``create_app`` calls ``migrate``). Without a lock
around the upgrade, two processes on a new PostgreSQL database both create the same tables
and one dies (``duplicate key value violates unique constraint "pg_type_typname_nsp_index"``);
MariaDB answers "table already exists" and SQLite "database is locked". The processes here are
real ones, released together by a barrier, on every backend.
"""

from __future__ import annotations

import multiprocessing
import traceback
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from craftsync.server.db import alembic_config, make_engine, migrate
from craftsync.server.schema import metadata

#: Server processes starting at once, and how often the race is run on a new database.
PROCESSES = 6
ROUNDS = 3
#: How long a process may take to import, migrate and report, in seconds.
PROCESS_TIMEOUT_S = 120


def _start_like_a_server(url: str, barrier: Any, results: Any) -> None:
    """Run in a child process: wait for the others, migrate, and report "ok" or the error."""
    engine = make_engine(url)
    try:
        barrier.wait(PROCESS_TIMEOUT_S)
        migrate(engine)
        results.put("ok")
    except BaseException as exc:  # reported to the test, which fails with it
        results.put("".join(traceback.format_exception_only(exc)).strip())
    finally:
        engine.dispose()


def _migrate_all_at_once(url: str) -> list[str]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [context.Process(target=_start_like_a_server, args=(url, barrier, results)) for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=PROCESS_TIMEOUT_S) for _ in processes]
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    return outcomes


@pytest.mark.timeout(PROCESS_TIMEOUT_S * 2)
@pytest.mark.parametrize("round_", range(1, ROUNDS + 1))
def test_servers_started_at_once_on_a_new_database_all_migrate_it(database_url: str, round_: int) -> None:
    # Given a new, empty central database
    # When six server processes migrate it at the same moment
    outcomes = _migrate_all_at_once(database_url)

    # Then every one of them succeeds
    failures = [outcome for outcome in outcomes if outcome != "ok"]
    assert not failures, f"round {round_}: {len(failures)} of {PROCESSES} failed:\n" + "\n".join(failures)
    # And the schema is at the newest revision, exactly as the code declares it
    engine = make_engine(database_url)
    try:
        head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
        with engine.connect() as conn:
            context = MigrationContext.configure(conn)
            assert context.get_current_heads() == (head,)
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()
