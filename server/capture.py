"""Change capture inside the central database: every write by any program is seen.

Each entity table has a bookkeeping table beside it (``craftsync_<entity>``), one row per
record, keyed by the table's own key: the record's contract ``id``, its ``version``, its
position ``seq`` in the entity's change feed, when it last changed, and ``deleted_at`` once
its row is gone. Triggers on the entity table keep it: every INSERT, UPDATE and DELETE, by
the API or by any other program on its own connection, raises the version and clears
``seq`` (the change is *pending*); a DELETE leaves the bookkeeping row as a tombstone. The
API's own writes take exactly this path.

Positions are handed out afterwards, not by the writers: ``sequence`` numbers the pending
changes that have committed, under the entity counter's row lock, in one short transaction.
A change that commits later is numbered by a later ``sequence``, so it always gets a larger
position than any a reader has already seen: a reader paging by cursor can never step over
it. The writers themselves take no shared lock: a long transaction of another program holds
up only writers of the same rows, never the rest of the table, and never the feed (the
numbering passes over rows that a running transaction holds: ``FOR UPDATE SKIP LOCKED``).

Per backend: SQLite and MariaDB/MySQL fire a trigger per row; PostgreSQL fires one per
statement, with the statement's rows as transition tables, so that a 1,000-row INSERT costs
one set-based write to the bookkeeping. The triggers are named ``craftsync_<entity>_<op>``.
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

from craftsync.server.mapping import EntityMap

TIME = String(24)

#: The canonical UTC time (``2026-12-01T10:42:00.123Z``) as each backend's SQL spells it.
_NOW: Final = {
    "sqlite": "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    "postgresql": "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
    "mysql": "CONCAT(LEFT(DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%dT%H:%i:%s.%f'), 23), 'Z')",
}

_OPS: Final = ("ins", "upd", "del")


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


def backend(dialect: Dialect | str) -> str:
    """The backend family of a dialect: "sqlite", "postgresql" or "mysql" (MariaDB too)."""
    name = dialect if isinstance(dialect, str) else dialect.name
    return "mysql" if name in ("mysql", "mariadb") else name


def _quote(dialect: str, name: str) -> str:
    return f"`{name}`" if dialect == "mysql" else f'"{name}"'


def install_ddl(entity_map: EntityMap, dialect: Dialect | str) -> list[str]:
    """The statements that install the entity's triggers (its bookkeeping table exists)."""
    d = backend(dialect)
    return {"sqlite": _sqlite, "postgresql": _postgresql, "mysql": _mysql}[d](entity_map, d)


def drop_ddl(entity_map: EntityMap, dialect: Dialect | str) -> list[str]:
    """The statements that remove the entity's triggers."""
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
    book, table, key, now = _quote(d, m.book), _quote(d, m.table), _quote(d, m.key), _NOW[d]
    upsert = (
        f"INSERT INTO {book} (row_key, id, version, seq, changed_at, deleted_at) "
        f"VALUES (NEW.{key}, {new_id_sql(m, d, 'NEW.' + key)}, 1, NULL, {now}, NULL) "
        "ON CONFLICT (row_key) DO UPDATE SET version = version + 1, seq = NULL, "
        "changed_at = excluded.changed_at, deleted_at = NULL;"
    )
    gone = f"UPDATE {book} SET version = version + 1, seq = NULL, changed_at = {now}, deleted_at = {now}"
    return [
        f"CREATE TRIGGER craftsync_{m.entity}_ins AFTER INSERT ON {table} BEGIN {upsert} END",
        f"CREATE TRIGGER craftsync_{m.entity}_upd AFTER UPDATE ON {table} BEGIN "
        f"{gone} WHERE row_key = OLD.{key} AND OLD.{key} IS NOT NEW.{key}; {upsert} END",
        f"CREATE TRIGGER craftsync_{m.entity}_del AFTER DELETE ON {table} BEGIN {gone} WHERE row_key = OLD.{key}; END",
    ]


def _mysql(m: EntityMap, d: str) -> list[str]:
    book, table, key, now = _quote(d, m.book), _quote(d, m.table), _quote(d, m.key), _NOW[d]
    upsert = (
        f"INSERT INTO {book} (row_key, id, version, seq, changed_at, deleted_at) "
        f"VALUES (NEW.{key}, {new_id_sql(m, d, 'NEW.' + key)}, 1, NULL, {now}, NULL) "
        "ON DUPLICATE KEY UPDATE version = version + 1, seq = NULL, "
        "changed_at = VALUES(changed_at), deleted_at = NULL;"
    )
    gone = f"UPDATE {book} SET version = version + 1, seq = NULL, changed_at = {now}, deleted_at = {now}"
    return [
        f"CREATE TRIGGER craftsync_{m.entity}_ins AFTER INSERT ON {table} FOR EACH ROW {upsert}",
        f"CREATE TRIGGER craftsync_{m.entity}_upd AFTER UPDATE ON {table} FOR EACH ROW BEGIN "
        f"IF NOT (OLD.{key} <=> NEW.{key}) THEN {gone} WHERE row_key = OLD.{key}; END IF; {upsert} END",
        f"CREATE TRIGGER craftsync_{m.entity}_del AFTER DELETE ON {table} FOR EACH ROW "
        f"{gone} WHERE row_key = OLD.{key}",
    ]


def _postgresql(m: EntityMap, d: str) -> list[str]:
    book, table, key, now = _quote(d, m.book), _quote(d, m.table), _quote(d, m.key), _NOW[d]
    upsert = (
        f"INSERT INTO {book} AS b (row_key, id, version, seq, changed_at, deleted_at) "
        f"SELECT n.{key}, {new_id_sql(m, d, 'n.' + key)}, 1, NULL, {now}, NULL FROM craftsync_new AS n "
        "ON CONFLICT (row_key) DO UPDATE SET version = b.version + 1, seq = NULL, "
        "changed_at = EXCLUDED.changed_at, deleted_at = NULL;"
    )
    gone = f"UPDATE {book} AS b SET version = b.version + 1, seq = NULL, changed_at = {now}, deleted_at = {now}"
    bodies = {
        "ins": (upsert, "INSERT", "NEW TABLE AS craftsync_new"),
        "upd": (
            f"{gone} FROM (SELECT {key} FROM craftsync_old EXCEPT SELECT {key} FROM craftsync_new) AS o "
            f"WHERE b.row_key = o.{key}; {upsert}",
            "UPDATE",
            "OLD TABLE AS craftsync_old NEW TABLE AS craftsync_new",
        ),
        "del": (f"{gone} FROM craftsync_old AS o WHERE b.row_key = o.{key};", "DELETE", "OLD TABLE AS craftsync_old"),
    }
    statements = []
    for op, (body, event, referencing) in bodies.items():
        name = f"craftsync_{m.entity}_{op}"
        statements.append(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body$ BEGIN {body} RETURN NULL; END $body$"
        )
        statements.append(
            f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {referencing} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )
    return statements


def sequence(conn: Connection, book: Table, counters: Table, entity: str) -> int:
    """Give every committed pending change of ``entity`` its place in the feed, after every
    place handed out before; returns how many. Runs in the caller's transaction, which must
    commit before the lock it takes (the entity counter's row) is released."""
    last = conn.execute(
        select(counters.c.value).where(counters.c.name == entity).with_for_update()
    ).scalar_one()
    d = backend(conn.dialect)
    name = _quote(d, book.name)
    if d == "mysql":
        # Lock what can be numbered now, passing over rows that running transactions hold,
        # then number those rows in order: a single-table UPDATE follows its ORDER BY. The
        # UPDATE reads its rows by key (FORCE INDEX): with many keys the planner would scan
        # the whole table, waiting on rows a running transaction holds while that transaction
        # waits on rows locked here (a deadlock).
        keys = conn.execute(text(
            f"SELECT row_key FROM {name} WHERE seq IS NULL ORDER BY changed_at, row_key FOR UPDATE SKIP LOCKED"
        )).scalars().all()
        conn.execute(text("SET @craftsync_seq = :last"), {"last": last})
        number = text(
            f"UPDATE {name} FORCE INDEX (PRIMARY) SET seq = (@craftsync_seq := @craftsync_seq + 1) "
            "WHERE row_key IN :keys ORDER BY changed_at, row_key"
        ).bindparams(bindparam("keys", expanding=True))
        done = sum(conn.execute(number, {"keys": keys[i : i + 1000]}).rowcount for i in range(0, len(keys), 1000))
    else:
        lock = " FOR UPDATE SKIP LOCKED" if d == "postgresql" else ""
        done = conn.execute(text(
            f"UPDATE {name} SET seq = :last + numbered.n FROM ("
            "SELECT row_key, row_number() OVER (ORDER BY changed_at, row_key) AS n FROM ("
            f"SELECT row_key, changed_at FROM {name} WHERE seq IS NULL{lock}) AS pending) AS numbered "
            f"WHERE {name}.row_key = numbered.row_key"
        ), {"last": last}).rowcount
    if done:
        conn.execute(update(counters).where(counters.c.name == entity).values(value=last + done))
    return done


def has_pending(conn: Connection, book: Table) -> bool:
    """Whether a committed change of the entity still waits for its place in the feed."""
    return conn.execute(select(book.c.row_key).where(book.c.seq.is_(None)).limit(1)).first() is not None
