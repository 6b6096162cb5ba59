"""The tables the server reads and writes, for the database it serves.

A ``Catalog`` holds, per entity, the entity's table as the server sees it (the key, the
columns the map names, typed so that values come and go in the contract's canonical form,
and the columns that need a value on insert) and its bookkeeping table. For a database
CraftSync created they are the tables of ``schema``; for an adopted one they are built from
the stored maps and the columns the database reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Column, Connection, Engine, MetaData, Table, Text, TypeDecorator, inspect
from sqlalchemy import types as sqltypes

from craftsync.contract.records import ENTITIES, MONEY_PRECISION, PERCENT_PRECISION, Kind, field_kind
from craftsync.server.capture import book_table
from craftsync.server.mapping import NATIVE, EntityMap, stored_maps
from craftsync.server.schema import BOOKS, TABLES, ExactDecimal


class IsoTime(TypeDecorator[str]):
    """A time the contract writes as ``2026-12-01T10:42:00.000Z`` in a DATETIME column
    (taken as UTC when it has no zone)."""

    impl = sqltypes.DateTime
    cache_ok = True

    def __init__(self, timezone: bool = False) -> None:
        super().__init__(timezone=timezone)
        self.timezone = timezone  # part of the statement cache's key

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        # A column WITH TIME ZONE takes the moment itself; one without, the UTC wall time.
        return moment if self.impl.timezone else moment.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class IsoDate(TypeDecorator[str]):
    """A day the contract writes as ``2026-12-01`` in a DATE column."""

    impl = sqltypes.Date
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return None if value is None else date.fromisoformat(value)

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        return value.isoformat()[:10] if not isinstance(value, str) else value[:10]


def contract_type(kind: Kind, column_type: Any) -> Any | None:
    """The type that carries a field of ``kind`` in a column of ``column_type`` in the
    contract's form, or None when the column cannot hold it."""
    textual = isinstance(column_type, (sqltypes.String, sqltypes.Text))
    numeric = isinstance(column_type, sqltypes.Numeric) and not isinstance(column_type, sqltypes.Float)
    if kind in (Kind.TEXT, Kind.LONG_TEXT):
        return column_type if textual else None
    if kind in (Kind.MONEY, Kind.PERCENT):
        precision, scale = MONEY_PRECISION if kind is Kind.MONEY else PERCENT_PRECISION
        return ExactDecimal(precision, scale) if numeric or textual else None
    if kind is Kind.TIME:
        if isinstance(column_type, sqltypes.DateTime):
            return IsoTime(timezone=bool(column_type.timezone))
        return column_type if textual else None
    if kind is Kind.DATE:
        if isinstance(column_type, sqltypes.Date) and not isinstance(column_type, sqltypes.DateTime):
            return IsoDate()
        return column_type if textual else None
    if kind is Kind.REFERENCE:
        integer = isinstance(column_type, sqltypes.Integer)
        return column_type if integer or textual else None
    return None


def _as_written(column_type: Any) -> Any:
    """The type that takes a mapping file's value (text for a date or a time) in a column."""
    if isinstance(column_type, sqltypes.DateTime):
        return IsoTime(timezone=bool(column_type.timezone))
    if isinstance(column_type, sqltypes.Date):
        return IsoDate()
    return column_type


@dataclass(frozen=True)
class EntityTables:
    """One entity's table, as the server reads and writes it, and its bookkeeping."""

    map: EntityMap
    rows: Table
    book: Table

    @property
    def key(self) -> Column:
        return self.rows.c[self.map.key]

    @property
    def record_id(self) -> Column:
        """The bookkeeping column to find a record by its id: the key itself where the key
        is the id (no second index to keep), else the id beside an integer key."""
        return self.book.c.row_key if self.map.key_is_id else self.book.c.id

    def column(self, name: str) -> Column | None:
        column = self.map.column(name)
        return self.rows.c[column] if column else None


class Catalog(dict[str, EntityTables]):
    """Every entity's tables, by entity."""

    @classmethod
    def native(cls) -> Catalog:
        return cls({entity: EntityTables(NATIVE[entity], TABLES[entity], BOOKS[entity]) for entity in ENTITIES})

    @classmethod
    def load(cls, engine: Engine) -> Catalog:
        """The catalog of the database behind ``engine`` (migrated or adopted)."""
        with engine.connect() as conn:
            maps = stored_maps(conn)
            return cls.native() if maps is None else cls.build(conn, maps)

    @classmethod
    def build(cls, conn: Connection, maps: dict[str, EntityMap]) -> Catalog:
        metadata = MetaData()
        inspector = inspect(conn)
        catalog = cls()
        for entity, entity_map in maps.items():
            reported = {c["name"]: c for c in inspector.get_columns(entity_map.table)}
            columns = [Column(entity_map.key, reported[entity_map.key]["type"], primary_key=True)]
            for name, column in entity_map.columns.items():
                if column is None or column == entity_map.key:
                    continue
                kind_type = contract_type(field_kind(entity, name), reported[column]["type"])
                columns.append(Column(column, kind_type if kind_type is not None else Text()))
            named = {c.name for c in columns}
            columns += [Column(name, _as_written(reported[name]["type"])) for name in entity_map.defaults
                        if name not in named]
            rows = Table(entity_map.table, metadata, *columns)
            catalog[entity] = EntityTables(entity_map, rows, book_table(entity_map, metadata))
        return catalog

