"""Change capture inside the central database: every write by any program is seen.

Each entity table has two tables beside it. Its *change log* (``craftsync_<entity>_log``)
gets the key of every row that an INSERT, UPDATE or DELETE touched, by the API or by any
other program on its own connection: the triggers on the entity table append that key and
do nothing else, so a writer pays one append to an unindexed table per row it writes. Its
*bookkeeping table* (``craftsync_<entity>``), one row per record keyed by the table's own
key, holds the record's contract ``id``, its ``version``, its position ``seq`` in the
entity's change feed, when it last changed, and ``deleted_at`` once its row is gone.

``fold`` moves the log into the bookkeeping, set-based: a record's version rises by one for
every logged write, its ``seq`` is cleared (the change is *pending*), and a key whose row is
no longer there becomes a tombstone. ``sequence`` then numbers the pending changes. Both run
under the entity counter's row lock, in one short transaction, before the server reads the
bookkeeping (a pull page, a record, a push batch); the API's own writes take exactly this
path. A change that commits after a fold is folded and numbered by a later one, so it always
gets a larger position than any a reader has already seen: a reader paging by cursor can
never step over it. The writers take no shared lock: a long transaction of another program
holds up only writers of the same rows, never the rest of the table, and never the feed
(its log rows are invisible, or on MariaDB/MySQL passed over: ``FOR UPDATE SKIP LOCKED``).

Every backend fires a trigger per row. On PostgreSQL a statement-level trigger with
transition tables costs less for a 1,000-row statement, but each firing has a fixed cost
that one-row statements pay in full, and drivers send a batch as one statement per row
(psycopg's ``executemany``, the API's own batches included): row triggers kept more of
every kind of write in ``tests/bench/bench_capture.py``. The triggers are named
``craftsync_<entity>_<op>``.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    select,
    text,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateTable

from craftsync.server.mapping import EntityMap

TIME = String(24)

#: The canonical UTC time (``2026-12-01T10:42:00.123Z``) as each backend's SQL spells it.
NOW_SQL: Final = {
    "sqlite": "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    "postgresql": "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
    "mysql": "CONCAT(LEFT(DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%dT%H:%i:%s.%f'), 23), 'Z')",
}

#: The triggers' suffixes; "key" (SQLite only) notes the old key of an UPDATE that changes it.
_OPS: Final = ("ins", "upd", "key", "del")
#: Log rows folded per statement on MariaDB/MySQL (bound parameters per IN list).
_CHUNK: Final = 1000


def book_table(entity_map: EntityMap, metadata: MetaData) -> Table:
    """The bookkeeping table of one entity, declared in ``metadata``.

    Every captured write changes it, so it carries only the indexes reads need: its key, the
    feed position, and the id where the id is not the key itself. On SQLite it is clustered
    by its key (``WITHOUT ROWID``): one B-tree fewer per write."""
    key_type = String(32) if entity_map.key_is_id else BigInteger()
    name = entity_map.book
    indexes = [Index(f"ix_{name}_seq", "seq", unique=True)]
    if not entity_map.key_is_id:
        indexes.append(Index(f"ix_{name}_id", "id", unique=True))
    return Table(
        name,
        metadata,
        Column("row_key", key_type, primary_key=True, autoincrement=False),
        Column("id", String(32), nullable=False),
        Column("version", Integer, nullable=False),
        Column("seq", BigInteger),
        Column("changed_at", TIME, nullable=False),
        Column("deleted_at", TIME),
        *indexes,
        sqlite_with_rowid=False,
    )


def log_table(entity_map: EntityMap, metadata: MetaData) -> Table:
    """The change log of one entity, declared in ``metadata``: the key of every row written
    since the last fold, in the order written (``entry``), and no other index."""
    key_type = String(32) if entity_map.key_is_id else BigInteger()
    return Table(
        entity_map.log,
        metadata,
        Column("entry", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
        Column("row_key", key_type, nullable=False),
    )


def backend(dialect: Dialect | str) -> str:
    """The backend family of a dialect: "sqlite", "postgresql" or "mysql" (MariaDB too)."""
    name = dialect if isinstance(dialect, str) else dialect.name
    return "mysql" if name in ("mysql", "mariadb") else name


def _quote(dialect: str, name: str) -> str:
    return f"`{name}`" if dialect == "mysql" else f'"{name}"'


def install_ddl(entity_map: EntityMap, dialect: Dialect | str) -> list[str]:
    """The statements that install the entity's change log (if it is not there yet) and its
    triggers (its bookkeeping table exists)."""
    d = backend(dialect)
    if isinstance(dialect, str):
        from sqlalchemy.dialects import mysql, postgresql, sqlite

        dialect = {"sqlite": sqlite, "postgresql": postgresql, "mysql": mysql}[d].dialect()
    log = CreateTable(log_table(entity_map, MetaData()), if_not_exists=True).compile(dialect=dialect)
    return [str(log).strip(), *{"sqlite": _sqlite, "postgresql": _postgresql, "mysql": _mysql}[d](entity_map, d)]


def trigger_names(entity: str, dialect: Dialect | str) -> list[str]:
    """The names of the entity's triggers (on PostgreSQL, of their functions too)."""
    ops = _OPS if backend(dialect) == "sqlite" else tuple(op for op in _OPS if op != "key")
    return [f"craftsync_{entity}_{op}" for op in ops]


def drop_ddl(entity_map: EntityMap, dialect: Dialect | str) -> list[str]:
    """The statements that remove the entity's triggers (its change log stays)."""
    d = backend(dialect)
    names = [f"craftsync_{entity_map.entity}_{op}" for op in _OPS]
    if d == "postgresql":
        table = _quote(d, entity_map.table)
        return [f"DROP TRIGGER IF EXISTS {n} ON {table}" for n in names] + [
            f"DROP FUNCTION IF EXISTS {n}()" for n in names
        ]
    return [f"DROP TRIGGER IF EXISTS {n}" for n in names]


def new_id_sql(entity_map: EntityMap, d: str, key: str) -> str:
    """The id of a row another program inserted: the key itself, or an integer key written
    as 32 decimal digits (a valid 32-hex id no device makes)."""
    if entity_map.key_is_id:
        return key
    if d == "sqlite":
        return f"substr('00000000000000000000000000000000' || {key}, -32, 32)"
    if d == "postgresql":
        return f"lpad({key}::text, 32, '0')"
    return f"LPAD({key}, 32, '0')"


def _sqlite(m: EntityMap, d: str) -> list[str]:
    log, table, key = _quote(d, m.log), _quote(d, m.table), _quote(d, m.key)

    def note(row: str) -> str:
        return f"BEGIN INSERT INTO {log} (row_key) VALUES ({row}.{key}); END"

    return [
        f"CREATE TRIGGER craftsync_{m.entity}_ins AFTER INSERT ON {table} {note('NEW')}",
        f"CREATE TRIGGER craftsync_{m.entity}_upd AFTER UPDATE ON {table} {note('NEW')}",
        # A new key: the old one's row is gone. Fires only for UPDATEs that set the key.
        f"CREATE TRIGGER craftsync_{m.entity}_key AFTER UPDATE OF {key} ON {table} "
        f"WHEN OLD.{key} IS NOT NEW.{key} {note('OLD')}",
        f"CREATE TRIGGER craftsync_{m.entity}_del AFTER DELETE ON {table} {note('OLD')}",
    ]


def _mysql(m: EntityMap, d: str) -> list[str]:
    log, table, key = _quote(d, m.log), _quote(d, m.table), _quote(d, m.key)

    def note(row: str) -> str:
        return f"INSERT INTO {log} (row_key) VALUES ({row}.{key})"

    return [
        f"CREATE TRIGGER craftsync_{m.entity}_ins AFTER INSERT ON {table} FOR EACH ROW {note('NEW')}",
        f"CREATE TRIGGER craftsync_{m.entity}_upd AFTER UPDATE ON {table} FOR EACH ROW BEGIN {note('NEW')}; "
        f"IF NOT (OLD.{key} <=> NEW.{key}) THEN {note('OLD')}; END IF; END",
        f"CREATE TRIGGER craftsync_{m.entity}_del AFTER DELETE ON {table} FOR EACH ROW {note('OLD')}",
    ]


def _postgresql(m: EntityMap, d: str) -> list[str]:
    log, table, key = _quote(d, m.log), _quote(d, m.table), _quote(d, m.key)

    def note(row: str) -> str:
        return f"INSERT INTO {log} (row_key) VALUES ({row}.{key});"

    bodies = {
        "ins": (note("NEW"), "INSERT"),
        # A new key: the old one's row is gone.
        "upd": (f"{note('NEW')} IF NEW.{key} IS DISTINCT FROM OLD.{key} THEN {note('OLD')} END IF;", "UPDATE"),
        "del": (note("OLD"), "DELETE"),
    }
    statements = []
    for op, (body, event) in bodies.items():
        name = f"craftsync_{m.entity}_{op}"
        statements.append(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body$ BEGIN {body} RETURN NULL; END $body$"
        )
        statements.append(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()")
    return statements


def fold(conn: Connection, entity_map: EntityMap) -> int:
    """Move the entity's committed change log into its bookkeeping; returns how many writes
    it held. Each record's version rises by its writes, its change becomes pending, and a
    key whose row is gone is a tombstone (a row made and deleted between two folds, which
    no one has seen, leaves nothing). Runs in the caller's transaction, under the entity
    counter's row lock."""
    d = backend(conn.dialect)
    book, log, table, key = (_quote(d, name) for name in (entity_map.book, entity_map.log, entity_map.table,
                                                         entity_map.key))
    now = NOW_SQL[d]
    upsert = (
        f"INSERT INTO {book} (row_key, id, version, seq, changed_at, deleted_at) "
        f"SELECT l.row_key, {new_id_sql(entity_map, d, 'l.row_key')}, l.n, NULL, {now}, "
        f"CASE WHEN t.{key} IS NULL THEN {now} END "
        f"FROM ({{written}}) AS l LEFT JOIN {table} AS t ON t.{key} = l.row_key "
        f"WHERE t.{key} IS NOT NULL OR EXISTS (SELECT 1 FROM {book} AS x WHERE x.row_key = l.row_key) "
    )
    if d == "mysql":
        # Take the log rows that committed, passing over those running transactions hold.
        changes = conn.execute(
            text(f"SELECT entry FROM {log} ORDER BY entry FOR UPDATE SKIP LOCKED")
        ).scalars().all()
        written = f"SELECT row_key, COUNT(*) AS n FROM {log} WHERE entry IN :changes GROUP BY row_key"
        move = text(
            upsert.format(written=written)
            + f"ON DUPLICATE KEY UPDATE {book}.version = {book}.version + VALUES(version), {book}.seq = NULL, "
            f"{book}.changed_at = VALUES(changed_at), {book}.deleted_at = "
            f"IF(VALUES(deleted_at) IS NULL, NULL, COALESCE({book}.deleted_at, VALUES(deleted_at)))"
        ).bindparams(bindparam("changes", expanding=True))
        forget = text(f"DELETE FROM {log} WHERE entry IN :changes").bindparams(bindparam("changes", expanding=True))
        for start in range(0, len(changes), _CHUNK):
            chunk = {"changes": changes[start : start + _CHUNK]}
            conn.execute(move, chunk)
            conn.execute(forget, chunk)
        return len(changes)
    conflict = (
        "ON CONFLICT (row_key) DO UPDATE SET version = b.version + EXCLUDED.version, seq = NULL, "
        "changed_at = EXCLUDED.changed_at, deleted_at = "
        "CASE WHEN EXCLUDED.deleted_at IS NULL THEN NULL ELSE COALESCE(b.deleted_at, EXCLUDED.deleted_at) END"
    )
    if d == "postgresql":
        # The DELETE takes exactly the log rows its snapshot sees: those that committed.
        return conn.execute(text(
            f"WITH moved AS (DELETE FROM {log} RETURNING row_key), "
            "counted AS (SELECT row_key, count(*) AS n FROM moved GROUP BY row_key), "
            "made AS (" + upsert.replace(f"INSERT INTO {book} ", f"INSERT INTO {book} AS b ").format(
                written="SELECT row_key, n FROM counted") + conflict + " RETURNING 1) "
            "SELECT coalesce(sum(n), 0) FROM counted"
        )).scalar_one()
    # SQLite: the transaction holds the file's write lock; every log row has committed.
    written = conn.execute(text(f"SELECT count(*) FROM {log}")).scalar_one()
    if written:
        conn.execute(text(
            upsert.replace(f"INSERT INTO {book} ", f"INSERT INTO {book} AS b ").format(
                written=f"SELECT row_key, count(*) AS n FROM {log} GROUP BY row_key") + conflict
        ))
        conn.execute(text(f"DELETE FROM {log}"))
    return int(written)


def sequence(conn: Connection, book: Table, counters: Table, entity: str) -> int:
    """Give every pending change of ``entity`` its place in the feed, after every place
    handed out before; returns how many. Runs in the caller's transaction, which must
    commit before the lock it takes (the entity counter's row) is released; only holders of
    that lock write the bookkeeping."""
    last = conn.execute(
        select(counters.c.value).where(counters.c.name == entity).with_for_update()
    ).scalar_one()
    d = backend(conn.dialect)
    name = _quote(d, book.name)
    if d == "mysql":
        # A single-table UPDATE follows its ORDER BY.
        conn.execute(text("SET @craftsync_seq = :last"), {"last": last})
        done = conn.execute(text(
            f"UPDATE {name} SET seq = (@craftsync_seq := @craftsync_seq + 1) "
            "WHERE seq IS NULL ORDER BY changed_at, row_key"
        )).rowcount
    else:
        done = conn.execute(text(
            f"UPDATE {name} SET seq = :last + numbered.n FROM ("
            "SELECT row_key, row_number() OVER (ORDER BY changed_at, row_key) AS n FROM ("
            f"SELECT row_key, changed_at FROM {name} WHERE seq IS NULL) AS pending) AS numbered "
            f"WHERE {name}.row_key = numbered.row_key"
        ), {"last": last}).rowcount
    if done:
        conn.execute(update(counters).where(counters.c.name == entity).values(value=last + done))
    return done


def has_pending(conn: Connection, entity_map: EntityMap) -> bool:
    """Whether a committed write of the entity waits to be folded, or a folded change for
    its place in the feed."""
    d = backend(conn.dialect)
    log, book = _quote(d, entity_map.log), _quote(d, entity_map.book)
    return conn.execute(text(
        f"SELECT EXISTS (SELECT 1 FROM {log}) OR EXISTS (SELECT 1 FROM {book} WHERE seq IS NULL)"
    )).scalar_one() in (True, 1)
