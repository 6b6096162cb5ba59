"""Putting CraftSync in front of a database a business already has (``craftsync server adopt``).

The business's tables are not altered: no column is added, renamed or retyped, no row is
rewritten. Many owners would not let a tool alter the tables their accounting program
writes, and that program's INSERTs and UPDATEs must keep working as they are. What CraftSync
needs to version and order the changes lives beside each table instead, in its bookkeeping
table and its change log (``capture``), keyed by the table's own key; only triggers are
added to the tables.

Adoption goes in three parts, the first two read-only:

1. ``_Survey``: the mapping file (``mapping.read_config``) and what the database reports give
   each entity its ``EntityMap``; each problem is one line naming the table and the column.
   Then every row is read as the server will serve it (``_check_rows``): a value it could
   not read is a problem, one the contract refuses a warning.
2. ``_plan``: the changes, each a ``Step`` with the line that says what it does: the server's
   own tables, each entity's bookkeeping table and triggers, the bookkeeping filled from the
   existing rows in one set-based statement (each row at version 1 with its place in the
   feed), the counters (the feed's, and quote and order numbers past the highest that other
   programs assigned), the stored maps, and Alembic's stamp at head, so that the server's
   start-up migration leaves the database as it is.
3. The steps run in the one transaction of the survey on SQLite and PostgreSQL. MariaDB and
   MySQL commit each DDL statement on its own: there a failure drops again everything the
   adoption made (names the survey found free, so nothing of the business's).

A dry run does the first two in a read-only transaction (the file opened read-only on
SQLite): it prints the plan and cannot change anything.

Other programs may keep writing while a database is adopted. On SQLite and PostgreSQL they
wait for the adoption's lock (the file's write lock; a SHARE ROW EXCLUSIVE lock on the
tables, which readers pass). On MariaDB the triggers go in before the bookkeeping is filled:
every write is either in the rows the fill reads or in the change log, which the server
folds in later (creating a trigger waits for transactions open on the table).
"""

from __future__ import annotations

import functools
import re
import time
from collections import Counter
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Connection, Engine, MetaData, create_engine, event, insert, inspect, text
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from craftsync.contract.records import (
    ENTITIES,
    MODELS,
    MONEY_PRECISION,
    NUMBER_FIELDS,
    NUMBER_PREFIXES,
    PERCENT_PRECISION,
    REFERENCES,
    Kind,
    data_fields,
    field_kind,
    format_number,
    max_length,
    now_iso,
    required_fields,
)
from craftsync.server.capture import backend, book_table, drop_ddl, install_ddl, new_id_sql, trigger_names
from craftsync.server.catalog import Catalog, EntityTables, IsoDate, IsoTime, contract_type
from craftsync.server.db import SQLITE_BUSY_TIMEOUT_MS, alembic_config, make_engine
from craftsync.server.mapping import OPTIONAL_TIMES, EntityMap, MapRequest, mapping_table, read_config
from craftsync.server.schema import counters, number_blocks

#: One record of each entity, in the messages.
_ONE: Final = {"customers": "customer", "quotes": "quote", "orders": "order"}
#: What a field of each kind holds, in the messages.
_HOLDS: Final = {
    Kind.TEXT: "text", Kind.LONG_TEXT: "text", Kind.MONEY: "an amount of money", Kind.PERCENT: "a percentage",
    Kind.DATE: "a date", Kind.TIME: "a date and time", Kind.REFERENCE: "a reference to another record",
}
_HEX_ID: Final = re.compile(r"[0-9a-f]{32}")
#: The tables CraftSync adds besides the bookkeeping; Alembic's is checked on its own.
_OWN_TABLES: Final = (counters.name, number_blocks.name, mapping_table.name)


class AdoptionError(Exception):
    """Raised when a database is not adopted: nothing was changed; ``problems`` says why,
    one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class Report:
    """What an adoption found and did (or, dry, would do)."""

    #: What the maps mean: where each entity lives, what has no column, warnings.
    notes: list[str] = field(default_factory=list)
    #: One line per change, in the order made.
    changes: list[str] = field(default_factory=list)
    #: Whether the changes were made (not a dry run, not adopted before).
    done: bool = False
    seconds: float = 0.0
    #: Of ``seconds``, those the changes took (the rest: reading and checking).
    change_seconds: float = 0.0
    #: Why there is nothing to do, when the database is CraftSync's already.
    already: str | None = None


@dataclass(frozen=True)
class Step:
    """One change: the line that says what it does, and what does it."""

    text: str
    run: Callable[[Connection], None]


def load_config(path: Path) -> dict[str, MapRequest]:
    """Each entity's request from the TOML mapping file at ``path``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AdoptionError([f"cannot read the mapping file {path}: {exc.strerror or exc}"]) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AdoptionError([f"mapping file {path} is not valid TOML: {exc}"]) from exc
    requests, problems = read_config(data)
    if problems:
        raise AdoptionError(problems)
    return requests


def adopt(url: str, requests: Mapping[str, MapRequest] | None = None, *, dry_run: bool = False) -> Report:
    """Make the database at ``url`` syncable as ``requests`` map it (none: the contract's
    own names); with ``dry_run``, only say how. Raises ``AdoptionError``, having changed
    nothing."""
    requests = requests or {entity: MapRequest(entity, entity) for entity in ENTITIES}
    engine = _engine(url, dry_run=dry_run)
    started = time.perf_counter()
    try:
        with _transaction(engine, dry_run=dry_run) as conn:
            report = _adopt(conn, requests, dry_run=dry_run)
    except SQLAlchemyError as exc:
        raise AdoptionError([f"the database refused: {_first_line(exc)}"]) from exc
    finally:
        engine.dispose()
    report.seconds = time.perf_counter() - started
    return report


def _adopt(conn: Connection, requests: Mapping[str, MapRequest], *, dry_run: bool) -> Report:
    already = _adopted_already(conn)
    if already:
        return Report(already=already)
    survey = _Survey(conn, requests)
    maps = survey.run()
    if not survey.problems:
        for entity_tables in Catalog.build(conn, maps).values():
            _check_rows(conn, entity_tables, survey)
    if survey.problems:
        raise AdoptionError(survey.problems)
    if conn.dialect.name == "postgresql" and not dry_run:
        # Other programs' writes wait until the adoption commits; their reads do not.
        tables = ", ".join(_quote(conn, m.table) for m in maps.values())
        conn.execute(text(f"LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE"))
    steps = _plan(conn, maps)
    report = Report(notes=survey.notes, changes=[step.text for step in steps])
    if dry_run:
        return report
    done: list[Step] = []
    started = time.perf_counter()
    try:
        for step in steps:
            step.run(conn)
            done.append(step)
    except SQLAlchemyError as exc:
        failed = steps[len(done)].text
        _undo(conn, maps)
        raise AdoptionError([f"the database refused to {failed}: {_first_line(exc)}"]) from exc
    report.done, report.change_seconds = True, time.perf_counter() - started
    return report


def _engine(url: str, *, dry_run: bool) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return make_engine(url)
    path = parsed.database or ""
    if path in ("", ":memory:") or not Path(path).is_file():
        raise AdoptionError([f"there is no database file at {path or '(none named)'}; DATABASE_URL names it"])
    if dry_run:  # read-only: nothing can change, not even the journal mode
        return create_engine(f"sqlite:///file:{Path(path).resolve()}?mode=ro&uri=true")
    # Not the server's engine: it switches the file to WAL, which SQLite refuses at once
    # ("database is locked") while another program has the file open. One BEGIN IMMEDIATE
    # transaction, waiting for other writers as the server does; the journal mode stays.
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the BEGIN below, not the driver's

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def _transaction(engine: Engine, *, dry_run: bool) -> Iterator[Connection]:
    """One transaction (BEGIN IMMEDIATE on SQLite), read-only for a dry run; committed
    when the block ends well and not dry, else rolled back."""
    try:
        opened = engine.connect()
    except SQLAlchemyError as exc:
        raise AdoptionError([f"cannot open the database: {_first_line(exc)}"]) from exc
    with opened.execution_options(write=not dry_run) as conn:
        conn.begin()
        if dry_run and conn.dialect.name != "sqlite":
            conn.execute(text("SET TRANSACTION READ ONLY"))
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        if dry_run:
            conn.rollback()
        else:
            conn.commit()


def _adopted_already(conn: Connection) -> str | None:
    """Why there is nothing to adopt, or None. A database is CraftSync's when Alembic's
    table holds one of CraftSync's revisions: adopted, when it also stores its maps."""
    inspector = inspect(conn)
    if not inspector.has_table("alembic_version"):
        return None
    revisions = {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}
    if not revisions or not revisions <= _revisions(conn):
        return None  # another program's: the survey says so
    if inspector.has_table(mapping_table.name):
        return "this database is adopted already (its maps are in craftsync_mapping); nothing was changed"
    return "this database was made by craftsync server and is CraftSync's already; nothing was changed"


def _revisions(conn: Connection) -> set[str]:
    script = ScriptDirectory.from_config(alembic_config(conn.engine))
    return {revision.revision for revision in script.walk_revisions()}


class _Survey:
    """What the database holds, against what the maps need: each entity's map, and a line
    per problem (``problems``) and per thing worth knowing (``notes``)."""

    def __init__(self, conn: Connection, requests: Mapping[str, MapRequest]) -> None:
        self.conn = conn
        self.requests = requests
        self.inspector = inspect(conn)
        self.tables = set(self.inspector.get_table_names())
        self.problems: list[str] = []
        self.notes: list[str] = []

    def run(self) -> dict[str, EntityMap]:
        self._own_names()
        maps: dict[str, EntityMap] = {}
        for entity in ENTITIES:
            request = self.requests.get(entity) or MapRequest(entity, entity)
            found = self._entity(request)
            if found is not None:
                maps[entity] = found
        self._shared_tables(maps)
        for entity_map in maps.values():
            self._references(entity_map, maps)
        return maps

    def problem(self, line: str) -> None:
        self.problems.append(line)

    # -- the database as a whole -------------------------------------------------------------

    def _own_names(self) -> None:
        """CraftSync's own tables and triggers must not be there yet; Alembic's table, here
        not CraftSync's (``_adopted_already``), belongs to another program."""
        if "alembic_version" in self.tables:
            self.problem("alembic_version: this table belongs to another program (it does not hold a CraftSync "
                         "schema version); CraftSync keeps its own schema version in a table of that name")
        own = (*_OWN_TABLES, *(f"craftsync_{e}" for e in ENTITIES), *(f"craftsync_{e}_log" for e in ENTITIES))
        taken = [name for name in own if name in self.tables]
        for name in taken:
            self.problem(f"{name}: a table of this name exists already; CraftSync needs the name for its own "
                         "bookkeeping (drop it if an adoption that did not finish left it)")
        for name, table in _own_triggers(self.conn):
            self.problem(f"{table}: a trigger named {name} exists already; CraftSync needs the name for its own")

    def _shared_tables(self, maps: dict[str, EntityMap]) -> None:
        by_table: dict[str, list[str]] = {}
        for entity_map in maps.values():
            by_table.setdefault(entity_map.table, []).append(entity_map.entity)
        for table, entities in by_table.items():
            if len(entities) > 1:
                self.problem(f"{table}: the mapping file puts {' and '.join(entities)} in the same table; "
                             "each needs its own")

    # -- one entity --------------------------------------------------------------------------

    def _entity(self, request: MapRequest) -> EntityMap | None:
        entity, table = request.entity, request.table
        if table not in self.tables:
            where = f" (the mapping file's {entity}.table)" if table != entity else ""
            self.problem(f"{table}: there is no table of this name in the database{where}; {entity} are to live there")
            return None
        reported = {column["name"]: column for column in self.inspector.get_columns(table)}
        before = len(self.problems)
        key = self._key(request, reported)
        key_is_id = self._key_kind(table, key, reported) if key else None
        columns = self._columns(request, reported, key)
        self._other_columns(request, reported, key, columns)
        if len(self.problems) > before or key is None or key_is_id is None:
            return None
        self._describe(request, reported, key, key_is_id, columns)
        return EntityMap(entity, table, key, key_is_id, columns, dict(request.defaults))

    def _key(self, request: MapRequest, reported: dict[str, Any]) -> str | None:
        """The key column: the mapping file's, or the primary key."""
        entity, table = request.entity, request.table
        primary = self.inspector.get_pk_constraint(table).get("constrained_columns") or []
        if request.key is not None:
            if request.key not in reported:
                self.problem(f"{table}.{request.key}: there is no such column (the mapping file's {entity}.key)")
                return None
            if [request.key] != primary and request.key not in self._unique_columns(table, reported):
                self.problem(f"{table}.{request.key}: this column is neither the primary key nor unique and always "
                             f"filled, so it cannot tell every {_ONE[entity]} apart (the mapping file's {entity}.key)")
                return None
            return request.key
        advice = f"(or name a unique column as {entity}.key in the mapping file)"
        if not primary:
            self.problem(f"{table}: the table has no primary key; CraftSync needs a column that tells every row "
                         f"apart {advice}")
            return None
        if len(primary) > 1:
            self.problem(f"{table}: the primary key has {len(primary)} columns ({', '.join(primary)}); CraftSync "
                         f"needs a key of one column {advice}")
            return None
        return str(primary[0])

    def _unique_columns(self, table: str, reported: dict[str, Any]) -> set[str]:
        """The columns that are unique on their own and NOT NULL."""
        sets = [c["column_names"] for c in self.inspector.get_unique_constraints(table)]
        sets += [i["column_names"] for i in self.inspector.get_indexes(table) if i.get("unique")]
        return {names[0] for names in sets if len(names) == 1 and not reported[names[0]]["nullable"]}

    def _key_kind(self, table: str, key: str, reported: dict[str, Any]) -> bool | None:
        """Whether the key holds ids itself (32 characters) or is an integer the database
        assigns; None (and a problem) when it is neither."""
        column_type = reported[key]["type"]
        if isinstance(column_type, sqltypes.Integer):
            if not self._numbers_rows(table, key, reported):
                self.problem(f"{table}.{key}: the database does not number new rows in this key column itself "
                             "(no AUTO_INCREMENT, SERIAL, identity or INTEGER PRIMARY KEY); CraftSync lets the "
                             "database give each record made on a device its key")
                return None
            negative = self._count(f"SELECT count(*) FROM {self._q(table)} WHERE {self._q(key)} < 0")
            if negative:
                self.problem(f"{table}.{key}: {negative} row(s) have a negative key; CraftSync writes a key as an id "
                             "of 32 digits, which has no room for a sign")
                return None
            return False
        if isinstance(column_type, sqltypes.String) and column_type.length == 32:
            bad = self._bad_ids(table, key)
            if bad:
                count, example = bad
                self.problem(f"{table}.{key}: {count} row(s) have a key that is not 32 lowercase hex digits "
                             f"(such as {example!r}); the key of a 32-character column is the records' id")
                return None
            return True
        self.problem(f"{table}.{key}: the key column is of type {self._type_name(column_type)}; CraftSync needs a key of "
                     "whole numbers (INTEGER) or of 32 characters (CHAR(32)) holding the records' ids")
        return None

    def _numbers_rows(self, table: str, key: str, reported: dict[str, Any]) -> bool:
        """Whether an INSERT that leaves out the integer ``key`` gets one from the database."""
        if self.conn.dialect.name != "sqlite":
            return bool(reported[key].get("autoincrement")) or "nextval(" in str(reported[key].get("default") or "")
        declared = {row[1]: row[2] for row in self.conn.execute(text(f"PRAGMA table_info({self._q(table)})"))}
        sql = self.conn.execute(text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
                                {"name": table}).scalar() or ""
        # Only a column declared INTEGER that is the whole primary key of a rowid table is the rowid.
        return declared.get(key, "").upper() == "INTEGER" and not re.search(r"WITHOUT\s+ROWID", sql, re.IGNORECASE)

    def _bad_ids(self, table: str, key: str) -> tuple[int, str] | None:
        count, example = 0, ""
        result = self.conn.execute(text(f"SELECT {self._q(key)} FROM {self._q(table)}").execution_options(
            stream_results=True))
        for (value,) in result:
            if not _HEX_ID.fullmatch(value):
                count, example = count + 1, example or value
        return (count, example) if count else None

    def _columns(self, request: MapRequest, reported: dict[str, Any], key: str | None) -> dict[str, str | None]:
        """Each field's column (None: none), after the mapping file and the fields' names."""
        entity, table = request.entity, request.table
        columns: dict[str, str | None] = {}
        for name in data_fields(entity)[1:]:
            needed = name in required_fields(entity) or name == NUMBER_FIELDS.get(entity)
            if name in request.columns:
                column = request.columns[name]
                if column is None and needed:
                    self.problem(f"{table}: {entity}.{name} cannot be left out (the mapping file says false): every "
                                 f"{_ONE[entity]} has one; name its column")
                elif column is not None and column not in reported:
                    self.problem(f"{table}.{column}: there is no such column (the mapping file puts {entity}.{name} "
                                 "there)")
                    column = None
            elif name in reported:
                column = name
            elif name in OPTIONAL_TIMES:
                column = None
            else:
                column = None
                self.problem(f"{table}: there is no column {name} for {entity}.{name}; name its column in the "
                             f"mapping file ([{entity}.columns] {name} = \"...\")"
                             + ("" if needed else f", or set {name} = false to keep it on the devices only"))
            if column is not None:
                self._check_column(entity, table, name, column, reported, key, columns)
            columns[name] = column
        return columns

    def _check_column(self, entity: str, table: str, name: str, column: str, reported: dict[str, Any],
                      key: str | None, columns: dict[str, str | None]) -> None:
        where = f"{table}.{column}"
        if column == key:
            self.problem(f"{where}: the key column cannot also hold {entity}.{name}")
            return
        twice = [other for other, used in columns.items() if used == column]
        if twice:
            self.problem(f"{where}: the mapping file puts both {entity}.{twice[0]} and {entity}.{name} in this column")
            return
        kind, column_type = field_kind(entity, name), reported[column]["type"]
        if contract_type(kind, column_type) is None:
            self.problem(f"{where}: a column of type {self._type_name(column_type)} cannot hold {entity}.{name}, which is "
                         f"{_HOLDS[kind]}" + (" (a text column is needed)" if name == NUMBER_FIELDS.get(entity) else ""))
            return
        optional = name not in required_fields(entity) and name != NUMBER_FIELDS.get(entity)
        if optional and not reported[column]["nullable"]:
            self.problem(f"{where}: the column must always hold a value, but a {_ONE[entity]}'s {name} may be "
                         f"empty; let the column be empty (NULL) or set {entity}.columns.{name} = false")
        limit, length = max_length(entity, name), getattr(column_type, "length", None)
        if limit and length and length < limit:
            self.notes.append(f"warning: {where} holds at most {length} characters, {entity}.{name} up to {limit}: "
                              "a device's longer value makes its push fail")
        lost = _precision_lost(kind, column_type, self.conn.dialect.name)
        if lost:
            self.notes.append(f"warning: {where} {lost}; what a device sends of {entity}.{name} is stored, and "
                              "served to the other devices, cut to that")

    def _other_columns(self, request: MapRequest, reported: dict[str, Any], key: str | None,
                       columns: dict[str, str | None]) -> None:
        """Columns no field fills: a NOT NULL one without a default needs the mapping
        file's value; the mapping file's values must be for such columns."""
        entity, table = request.entity, request.table
        filled = {key, *columns.values()}
        for name, column in reported.items():
            must = not column["nullable"] and column.get("default") is None and not column.get("computed")
            if name not in filled and must and name not in request.defaults:
                self.problem(f"{table}.{name}: the column must always hold a value and has no default, and no field "
                             f"of a {_ONE[entity]} fills it; give its value for new rows in the mapping file "
                             f"([{entity}.defaults] {name} = ...)")
        for name in request.defaults:
            if name not in reported:
                self.problem(f"{table}.{name}: there is no such column (the mapping file gives it a value under "
                             f"[{entity}.defaults])")
            elif name in filled:
                self.problem(f"{table}.{name}: CraftSync fills this column itself; a value for it under "
                             f"[{entity}.defaults] would never be used")

    def _references(self, entity_map: EntityMap, maps: dict[str, EntityMap]) -> None:
        """A reference column must hold the referenced table's keys."""
        reported = {c["name"]: c for c in self.inspector.get_columns(entity_map.table)}
        for name, target in REFERENCES[entity_map.entity].items():
            column, target_map = entity_map.columns.get(name), maps.get(target)
            if column is None or target_map is None:
                continue
            column_type = reported[column]["type"]
            where = f"{entity_map.table}.{column}"
            if target_map.key_is_id:
                fits = isinstance(column_type, sqltypes.String) and (column_type.length or 32) >= 32
                needs = "a text column of 32 characters or more"
            else:
                fits, needs = isinstance(column_type, sqltypes.Integer), "a whole-number column"
            if not fits:
                key_type = self._type_name(self._key_type(target_map))
                self.problem(f"{where}: {entity_map.entity}.{name} refers to {target_map.table}, whose key "
                             f"{target_map.key} is of type {key_type}, so it needs {needs}, "
                             f"not one of type {self._type_name(column_type)}")

    def _key_type(self, entity_map: EntityMap) -> Any:
        columns = {c["name"]: c for c in self.inspector.get_columns(entity_map.table)}
        return columns[entity_map.key]["type"]

    def _describe(self, request: MapRequest, reported: dict[str, Any], key: str, key_is_id: bool,
                  columns: dict[str, str | None]) -> None:
        entity, table = request.entity, request.table
        ids = ("32-character ids: the key is each record's id" if key_is_id else
               f"whole numbers the database assigns: each row's id is kept in craftsync_{entity}")
        self.notes.append(f"{entity} live in {table}, key {key} ({ids})")
        pairs = [name if column == name else f"{name} -> {column}" for name, column in columns.items() if column]
        self.notes.append(f"  fields -> columns: {', '.join(pairs)}")
        for name, column in columns.items():
            if column is not None:
                continue
            if name == "deleted_at":
                self.notes.append(f"  {entity}.deleted_at: no column, so a device's delete removes the row (DELETE)")
            else:
                self.notes.append(f"  {entity}.{name}: no column; the server stores none, devices keep theirs")
        others = [name for name in reported if name != key and name not in columns.values()]
        if others:
            given = "".join(f"; a row made from a device's record gets {name} = {value!r}"
                            for name, value in request.defaults.items())
            self.notes.append(f"  other columns, never changed by CraftSync: {', '.join(others)}{given}")
        if not key_is_id and self.conn.dialect.name == "sqlite" and not self._sqlite_autoincrement(table):
            self.notes.append(f"warning: {table} is not declared AUTOINCREMENT, so SQLite gives a new row the key "
                              "of the last row deleted, if it was the highest; a device then sees the deleted "
                              "record come back with the new row's content")

    def _sqlite_autoincrement(self, table: str) -> bool:
        sql = self.conn.execute(text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
                                {"name": table}).scalar() or ""
        return re.search(r"\bAUTOINCREMENT\b", sql, re.IGNORECASE) is not None

    # -- helpers -----------------------------------------------------------------------------

    def _q(self, name: str) -> str:
        return _quote(self.conn, name)

    def _count(self, sql: str) -> int:
        return int(self.conn.execute(text(sql)).scalar() or 0)

    def _type_name(self, column_type: Any) -> str:
        try:
            return str(column_type.compile(dialect=self.conn.dialect))
        except Exception:  # a type this dialect cannot spell: its class is name enough
            return type(column_type).__name__.upper()


def _check_rows(conn: Connection, tables: EntityTables, survey: _Survey) -> None:
    """Read every value as the server will serve it: one that cannot be read (a date that is
    no date) is a problem, for the server could not serve its record; one the contract refuses
    (an e-mail address without @) is a warning, for a device could receive the record but not
    send a change of it back until the value is corrected. Each distinct value of a column is
    read and checked once."""
    entity, entity_map = tables.map.entity, tables.map
    names = [name for name in data_fields(entity)[1:] if entity_map.columns.get(name)
             and name not in REFERENCES[entity] and not _checked_by_database(conn, tables, name)]
    columns = [tables.rows.c[entity_map.columns[name]] for name in names]  # type: ignore[index]
    raw = text(f"SELECT {', '.join(_quote(conn, c.name) for c in [tables.key, *columns])} "
               f"FROM {_quote(conn, entity_map.table)}").execution_options(stream_results=True)
    result = conn.execute(raw)
    # Read by its column's type, as the server reads it (the driver's type code decides the
    # conversion on some backends).
    codes = [description[1] for description in result.cursor.description[1:]]
    readers = [column.type.dialect_impl(conn.dialect).result_processor(conn.dialect, code)
               for column, code in zip(columns, codes)]
    counts: list[Counter[Any]] = [Counter() for _ in names]
    examples: list[dict[Any, Any]] = [{} for _ in names]  # value -> the key of a row holding it
    for part in result.partitions(10_000):
        keys, *values = zip(*part)
        for count, example, column_values in zip(counts, examples, values):
            count.update(column_values)
            example.update(zip(column_values, keys))
    for name, column, read, count, example in zip(names, columns, readers, counts, examples):
        where, adapter = f"{entity_map.table}.{column.name}", _adapter(entity, name)
        bad, refused = [], []
        for value in count:
            if value is None:
                continue
            try:
                served = read(value) if read else value
            except (ValueError, TypeError, ArithmeticError):
                bad.append(value)
                continue
            try:
                adapter.validate_python(served)
            except ValidationError as exc:
                refused.append((value, exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")))
        if bad:
            survey.problem(f"{where}: {_rows(sum(count[v] for v in bad))} a value that cannot be read as "
                           f"{_HOLDS[field_kind(entity, name)]} (such as {bad[0]!r}, where {entity_map.key} is "
                           f"{example[bad[0]]!r}); correct them first")
        if refused:
            value, message = refused[0]
            survey.notes.append(f"warning: {where}: {_rows(sum(count[v] for v, _ in refused))} a value that "
                                f"{entity}.{name} refuses (where {entity_map.key} is {example[value]!r}: {message}); "
                                "a device receives such a record, but a change of it is refused until the value "
                                "is corrected")


def _checked_by_database(conn: Connection, tables: EntityTables, name: str) -> bool:
    """Whether every value of the field's column is one the contract takes, by the column's
    type: a DATE or a TIMESTAMP column outside SQLite, which stores any text anywhere."""
    column = tables.column(name)
    return conn.dialect.name != "sqlite" and column is not None and isinstance(column.type, (IsoDate, IsoTime))


@functools.cache
def _adapter(entity: str, name: str) -> TypeAdapter[Any]:
    """The contract's check of one field of an entity."""
    info = MODELS[entity].model_fields[name]
    return TypeAdapter(Annotated[(info.annotation, *info.metadata)])  # type: ignore[misc]


def _rows(count: int) -> str:
    return "1 row holds" if count == 1 else f"{count} rows hold"


def _precision_lost(kind: Kind, column_type: Any, dialect: str) -> str | None:
    """What a column of ``column_type`` loses of a field of ``kind``, or None."""
    if kind is Kind.TIME and dialect in ("mysql", "mariadb") and isinstance(column_type, sqltypes.DateTime):
        return None if getattr(column_type, "fsp", None) else "keeps whole seconds (DATETIME(3) keeps milliseconds)"
    if kind in (Kind.MONEY, Kind.PERCENT) and isinstance(column_type, sqltypes.Numeric) and dialect != "sqlite":
        precision, scale = MONEY_PRECISION if kind is Kind.MONEY else PERCENT_PRECISION
        held = column_type.scale
        if held is not None and held < scale:
            return f"keeps {held} decimal places, not {scale}"
        if column_type.precision is not None and held is not None and column_type.precision - held < precision - scale:
            return f"holds at most {column_type.precision - held} digits before the point, not {precision - scale}"
    return None


def _own_triggers(conn: Connection) -> list[tuple[str, str]]:
    """(name, table) of every trigger whose name CraftSync's triggers would take."""
    names = {name for entity in ENTITIES for name in trigger_names(entity, conn.dialect)}
    dialect = backend(conn.dialect)
    if dialect == "sqlite":
        query = "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'"
    elif dialect == "postgresql":
        query = ("SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                 "WHERE NOT t.tgisinternal UNION ALL SELECT p.proname, '(a function)' FROM pg_proc p "
                 "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = current_schema()")
    else:
        query = ("SELECT trigger_name, event_object_table FROM information_schema.triggers "
                 "WHERE trigger_schema = DATABASE()")
    return [(row[0], row[1]) for row in conn.execute(text(query)) if row[0] in names]


# -- the changes --------------------------------------------------------------------------------


def _plan(conn: Connection, maps: dict[str, EntityMap]) -> list[Step]:
    """Every change, in the order made: tables, triggers, the bookkeeping filled, the
    counters, the maps, the schema version."""
    books = {entity: book_table(entity_map, MetaData()) for entity, entity_map in maps.items()}
    initial = [{"name": name, "value": 0} for name in (*maps, *(f"{e}.number" for e in NUMBER_FIELDS))]
    steps = [
        Step("create table craftsync_counters (each entity's last place in its feed, the last quote and order "
             "numbers handed out)", lambda c: (counters.create(c), c.execute(insert(counters), initial))),
        Step("create table craftsync_number_blocks (which device was given which quote and order numbers)",
             lambda c: number_blocks.create(c)),
        Step("create table craftsync_mapping (where each entity lives, read by craftsync server at every start)",
             lambda c: mapping_table.create(c)),
    ]
    for entity, entity_map in maps.items():
        steps.append(Step(f"create table {entity_map.book} (each row of {entity_map.table}: its id, version and "
                          f"place in the feed, by {entity_map.key})", lambda c, b=books[entity]: b.create(c)))
    for entity_map in maps.values():
        names = ", ".join(trigger_names(entity_map.entity, conn.dialect))
        steps.append(Step(f"install triggers {names} on {entity_map.table}, with their table {entity_map.log} "
                          f"(every INSERT, UPDATE and DELETE there, by any program, notes the row's key in "
                          f"{entity_map.log}; the server then raises its version in {entity_map.book})",
                          lambda c, m=entity_map: _install_triggers(c, m)))
    for entity, entity_map in maps.items():
        rows = int(conn.execute(text(f"SELECT count(*) FROM {_quote(conn, entity_map.table)}")).scalar() or 0)
        places = f"places 1 to {rows}" if rows else "no places"
        steps.append(Step(f"fill {entity_map.book} from the {rows} rows of {entity_map.table}: version 1 each, "
                          f"{places} in the feed in {entity_map.key} order", lambda c, m=entity_map: _fill(c, m)))
        steps.append(Step(f"set counter {entity} to {rows} (the last place in the feed)",
                          lambda c, e=entity, b=books[entity]: _set_feed_counter(c, e, b.name)))
    for entity, number_field in NUMBER_FIELDS.items():
        if entity in maps:
            steps.append(_number_step(conn, maps[entity], number_field))
    steps.append(Step(f"store the maps of {', '.join(maps)} in craftsync_mapping", lambda c: c.execute(
        insert(mapping_table), [{"entity": e, "spec": m.to_json()} for e, m in maps.items()])))
    head = ScriptDirectory.from_config(alembic_config(conn.engine)).get_current_head()
    steps.append(Step(f"stamp alembic_version at revision {head} (craftsync server's start-up migration then "
                      "leaves every table as it is)", _stamp))
    return steps


def _install_triggers(conn: Connection, entity_map: EntityMap) -> None:
    for statement in install_ddl(entity_map, conn.dialect):
        conn.execute(text(statement))


def _fill(conn: Connection, entity_map: EntityMap) -> None:
    """Every existing row at version 1 with its place in the feed, in one statement. On
    MariaDB a row a trigger noted meanwhile keeps its pending change."""
    d = backend(conn.dialect)
    book, table, key = (_quote(conn, name) for name in (entity_map.book, entity_map.table, entity_map.key))
    sql = (f"INSERT INTO {book} (row_key, id, version, seq, changed_at) "
           f"SELECT {key}, {new_id_sql(entity_map, d, key)}, 1, row_number() OVER (ORDER BY {key}), :now FROM {table}")
    if d == "mysql":
        sql += f" ON DUPLICATE KEY UPDATE {book}.row_key = {book}.row_key"
    conn.execute(text(sql), {"now": now_iso()})


def _set_feed_counter(conn: Connection, entity: str, book: str) -> None:
    last = conn.execute(text(f"SELECT max(seq) FROM {_quote(conn, book)}")).scalar() or 0
    conn.execute(counters.update().where(counters.c.name == entity).values(value=int(last)))


def _number_step(conn: Connection, entity_map: EntityMap, number_field: str) -> Step:
    entity = entity_map.entity
    column = entity_map.columns[number_field]
    assert column is not None  # the survey requires it
    where = f"{entity_map.table}.{column}"
    highest = _highest_number(conn, entity_map, column)
    form = format_number(entity, 1)
    if highest:
        text_ = (f"set counter {entity}.number to {highest}: the highest number of the form {form} in {where} is "
                 f"{format_number(entity, highest)}, so devices' numbers start after it")
    else:
        text_ = f"set counter {entity}.number to 0: {where} holds no number of the form {form}"

    def run(c: Connection) -> None:
        value = _highest_number(c, entity_map, column)
        c.execute(counters.update().where(counters.c.name == f"{entity}.number").values(value=value))

    return Step(text_, run)


def _highest_number(conn: Connection, entity_map: EntityMap, column: str) -> int:
    """The largest n whose number (``format_number``, Q-000123) the column holds; 0 if none."""
    entity, prefix = entity_map.entity, NUMBER_PREFIXES[entity_map.entity]
    pattern = re.compile(re.escape(prefix) + r"([0-9]+)")
    name, table = _quote(conn, column), _quote(conn, entity_map.table)
    highest = 0
    select_numbers = text(f"SELECT {name} FROM {table} WHERE {name} LIKE :prefix")
    result = conn.execute(select_numbers.execution_options(stream_results=True), {"prefix": prefix + "%"})
    for (value,) in result:
        number = (value or "").rstrip(" ")  # a CHAR column pads
        match = pattern.fullmatch(number)
        if match and format_number(entity, int(match[1])) == number:
            highest = max(highest, int(match[1]))
    return highest


def _stamp(conn: Connection) -> None:
    """Alembic's stamp at head, on the adoption's own connection and in its transaction.

    Not ``alembic.command.stamp``: it runs ``migrations/env.py``, which opens a connection of
    its own, outside the transaction (and on SQLite waits for the write lock this one holds)."""
    script = ScriptDirectory.from_config(alembic_config(conn.engine))
    MigrationContext.configure(connection=conn).stamp(script, "head")


def _undo(conn: Connection, maps: dict[str, EntityMap]) -> None:
    """After a failed step: roll back; where DDL committed on its own (MariaDB/MySQL), drop
    what the adoption made, all of it under names the survey found free."""
    conn.rollback()
    if backend(conn.dialect) != "mysql":
        return
    for entity_map in maps.values():
        for statement in drop_ddl(entity_map, conn.dialect):
            conn.execute(text(statement))
    for name in (*(m.book for m in maps.values()), *(m.log for m in maps.values()), *_OWN_TABLES, "alembic_version"):
        conn.execute(text(f"DROP TABLE IF EXISTS {_quote(conn, name)}"))
    conn.commit()


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote_identifier(name)


def _first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__
