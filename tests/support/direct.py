"""Another program writing the central database: plain SQL through the database's driver, on
connections of its own, never through the server's code.

``Direct(database_url)`` is that program (an accounting program, a staff member in a SQL
client). Its engine is the test's own, with no pooling, so that every ``connect`` is a real
connection of the driver's, with the driver's own defaults (MariaDB's REPEATABLE READ, say),
as a program that knows nothing of CraftSync would open it. Writes are ``text()`` statements
with named parameters; ``transaction()`` gives one transaction to hold open as long as a test
likes (``BEGIN; UPDATE ...`` not yet committed).

Reads are raw too: ``book`` is the entity's bookkeeping table (``craftsync_<entity>``) as
stored; the entity's rows are ``tests.support.sync.central_rows``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

#: How long the other program's SQLite connection waits for the file's write lock, in seconds
#: (the server's own writers wait 30 s too).
SQLITE_TIMEOUT_S = 30


def canonical_now() -> str:
    """Now as the contract spells a time: UTC, milliseconds, ``Z``."""
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def new_hex_id() -> str:
    """A 32-hex id, as another program might make one for a native table."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


class Booked(NamedTuple):
    """One row of an entity's bookkeeping table, as stored."""

    version: int
    seq: int | None
    deleted_at: str | None


class OpenTransaction:
    """A transaction of the other program's, begun and not yet committed."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._transaction = conn.begin()

    def execute(self, statement: str, **params: Any) -> int:
        """One statement inside the transaction; returns the rows it touched."""
        return self.conn.execute(text(statement), params).rowcount

    def commit(self) -> None:
        self._transaction.commit()
        self.conn.close()

    def rollback(self) -> None:
        self._transaction.rollback()
        self.conn.close()


class Direct:
    """Plain SQL on the central database, on connections of this program's own."""

    def __init__(self, database_url: str) -> None:
        # (SQLite: a transaction held open may be committed from another thread)
        args = {"timeout": SQLITE_TIMEOUT_S, "check_same_thread": False} if database_url.startswith("sqlite") else {}
        self.engine: Engine = create_engine(database_url, poolclass=NullPool, connect_args=args)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction on a connection of its own: committed when the block ends, rolled
        back when it raises."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def begin(self) -> OpenTransaction:
        """A transaction to hold open: its statements run at once, its commit comes when the
        test says (from any thread)."""
        return OpenTransaction(self.engine.connect())

    def execute(self, statement: str, **params: Any) -> int:
        """One statement in a transaction of its own; returns the rows it touched."""
        with self.transaction() as conn:
            return conn.execute(text(statement), params).rowcount

    def insert(self, entity: str, **values: Any) -> str:
        """INSERT only the columns given (an id is made when none is); returns the id."""
        values.setdefault("id", new_hex_id())
        self.execute(f"INSERT INTO {entity} ({', '.join(values)}) VALUES ({', '.join(':' + n for n in values)})",
                     **values)
        return str(values["id"])

    def update(self, entity: str, record_id: str, **values: Any) -> int:
        """UPDATE the columns given of one row."""
        sets = ", ".join(f"{name} = :{name}" for name in values)
        return self.execute(f"UPDATE {entity} SET {sets} WHERE id = :record_id", record_id=record_id, **values)

    def soft_delete(self, entity: str, record_id: str, when: str | None = None) -> int:
        return self.update(entity, record_id, deleted_at=when or canonical_now())

    def delete(self, entity: str, record_id: str) -> int:
        """A hard DELETE of one row."""
        return self.execute(f"DELETE FROM {entity} WHERE id = :record_id", record_id=record_id)

    def book(self, entity: str) -> dict[str, Booked]:
        """The entity's bookkeeping rows as stored, by contract id."""
        with self.engine.connect() as conn:
            rows = conn.execute(text(f"SELECT id, version, seq, deleted_at FROM craftsync_{entity}")).all()
        return {row[0]: Booked(row[1], row[2], row[3]) for row in rows}
