"""Server processes started at the same moment on a new database all come up.

Each one migrates the schema on start (``create_app`` calls ``migrate``). Without a lock
around the upgrade, two processes on a new PostgreSQL database both create the same tables
and one dies (``duplicate key value violates unique constraint "pg_type_typname_nsp_index"``);
MariaDB answers "table already exists" and SQLite "database is locked". The processes here are
real ones, released together by a barrier, on every backend.

A database made at an older revision keeps every change another program made there across
the upgrade to today's change capture.
"""

from __future__ import annotations

import multiprocessing
import traceback
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from sqlalchemy import text

from craftsync.server.db import alembic_config, make_engine, migrate
from craftsync.server.schema import metadata
from tests.support.api import make_app, pull_all
from tests.support.direct import Direct

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


def test_a_database_made_before_the_change_log_keeps_every_change_across_the_upgrade(database_url: str) -> None:
    # Given a central database at revision 0002, whose triggers keep the bookkeeping row by row,
    engine = make_engine(database_url)
    migrate(engine, "0002")
    engine.dispose()
    program = Direct(database_url)
    try:
        # where another program made a customer that a pull then numbered, and then changed
        # it and made a second one, both still waiting for their places in the feed
        first = program.insert("customers", name="Numbered")
        program.execute("UPDATE craftsync_customers SET seq = 1 WHERE row_key = :id", id=first)
        program.execute("UPDATE craftsync_counters SET value = 1 WHERE name = 'customers'")
        program.update("customers", first, name="Numbered, then edited")
        second = program.insert("customers", name="Pending")
        assert program.book("customers")[first].version == 2

        # When the server starts (its start-up migration upgrades the database) and the
        # program goes on writing, now through the change log
        client = make_app(database_url).test_client()
        program.update("customers", second, name="Pending, then edited")
        third = program.insert("customers", name="After the upgrade")

        # Then a device pulling from the start gets every change once, at the versions every
        # write made, and the bookkeeping stores exactly those
        records, _ = pull_all(client, "customers")
        assert len(records) == 3 and {(r["id"], r["name"], r["version"]) for r in records} == {
            (first, "Numbered, then edited", 2), (second, "Pending, then edited", 2), (third, "After the upgrade", 1)}
        book = program.book("customers")
        assert {rid: (b.version, b.seq is not None) for rid, b in book.items()} == {
            first: (2, True), second: (2, True), third: (1, True)}
        with program.transaction() as conn:
            assert conn.execute(text("SELECT count(*) FROM craftsync_customers_log")).scalar_one() == 0
    finally:
        program.close()
