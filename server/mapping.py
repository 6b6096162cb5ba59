"""Where each entity lives in the central database: its table, its key and its columns.

A database that CraftSync created holds each entity in a table of the entity's own name,
keyed by the contract's 32-hex ``id``, with a column per field: the *native* mapping. A
database a business already had (``craftsync server adopt``) may name tables and columns
otherwise, key its rows by an auto-increment integer, lack some optional fields and hold
columns the contract does not know. An ``EntityMap`` says all of that for one entity; the
maps of an adopted database are stored in it (``craftsync_mapping``), so that the server
finds them at every start without a flag.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, Final

from sqlalchemy import Column, Connection, MetaData, String, Table, Text, inspect, select

from craftsync.contract.records import ENTITIES, canonical_time, data_fields

#: The table that holds the maps of an adopted database (none: the native mapping).
mapping_table = Table(
    "craftsync_mapping",
    MetaData(),
    Column("entity", String(20), primary_key=True),
    Column("spec", Text, nullable=False),
)

#: Fields a table may lack: their values stay on the devices (the server serves null).
OPTIONAL_TIMES: Final = ("created_at", "updated_at", "deleted_at")


@dataclass(frozen=True)
class EntityMap:
    """One entity's place in the central database."""

    entity: str
    table: str
    #: The primary-key column.
    key: str
    #: Whether the key column holds the contract's id itself; otherwise it is an integer the
    #: database assigns, and the id lives in the bookkeeping table beside it.
    key_is_id: bool = True
    #: Every contract field but ``id``: its column, or None when the table has none.
    columns: Mapping[str, str | None] = field(default_factory=dict)
    #: Values for NOT NULL columns the contract does not know, used when a device's record
    #: becomes a new row.
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def book(self) -> str:
        """The name of the entity's bookkeeping table (version, change position, id)."""
        return f"craftsync_{self.entity}"

    @property
    def log(self) -> str:
        """The name of the entity's change log: the keys of rows written since the last fold."""
        return f"craftsync_{self.entity}_log"

    def column(self, name: str) -> str | None:
        return self.key if name == "id" and self.key_is_id else self.columns.get(name)

    def to_json(self) -> str:
        return json.dumps({"table": self.table, "key": self.key, "key_is_id": self.key_is_id,
                           "columns": dict(self.columns), "defaults": dict(self.defaults)}, sort_keys=True)

    @classmethod
    def from_json(cls, entity: str, spec: str) -> EntityMap:
        data = json.loads(spec)
        return cls(entity, data["table"], data["key"], data["key_is_id"], data["columns"], data["defaults"])


def native(entity: str) -> EntityMap:
    """The map of a table CraftSync created: the entity's name, its fields' names."""
    return EntityMap(entity, entity, "id", True, {name: name for name in data_fields(entity) if name != "id"})


NATIVE: Final = {entity: native(entity) for entity in ENTITIES}


def stored_maps(conn: Connection) -> dict[str, EntityMap] | None:
    """The maps an adopted database stores, or None for a database CraftSync created."""
    if not inspect(conn).has_table(mapping_table.name):
        return None
    stored = {row.entity: EntityMap.from_json(row.entity, row.spec) for row in conn.execute(select(mapping_table))}
    return {entity: stored.get(entity, NATIVE[entity]) for entity in ENTITIES}


def load_maps(conn: Connection) -> dict[str, EntityMap]:
    """The maps stored in the database, or the native ones when it stores none."""
    stored = stored_maps(conn)
    return dict(NATIVE) if stored is None else stored


@dataclass(frozen=True)
class MapRequest:
    """What a mapping file (``docs/adopt-example.toml``) says of one entity; what it leaves
    out, ``adopt`` takes from the database (the primary key, columns of the fields' names)."""

    entity: str
    table: str
    key: str | None = None
    #: Only the fields the file names: their column, or None for ``false`` (no column).
    columns: Mapping[str, str | None] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)


#: The keys a mapping file's entity section may hold.
_SECTION_KEYS: Final = ("table", "key", "columns", "defaults")


def read_config(data: Mapping[str, Any]) -> tuple[dict[str, MapRequest], list[str]]:
    """Each entity's request from a parsed mapping file (an entity it leaves out: its own
    names), and a line per problem with the file itself."""
    problems = [f"mapping file: [{name}] is not an entity; use {', '.join(ENTITIES)}"
                for name in data if name not in ENTITIES]
    requests = {}
    for entity in ENTITIES:
        section = data.get(entity, {})
        if not isinstance(section, Mapping):
            problems.append(f"mapping file: {entity} must be a section ([{entity}])")
            section = {}
        request, found = _request(entity, section)
        requests[entity] = request
        problems += found
    return requests, problems


def _request(entity: str, section: Mapping[str, Any]) -> tuple[MapRequest, list[str]]:
    problems = [f"mapping file: {entity}.{name} is not a setting; use {', '.join(_SECTION_KEYS)}"
                for name in section if name not in _SECTION_KEYS]
    table, key = section.get("table", entity), section.get("key")
    if not isinstance(table, str) or not table:
        problems.append(f"mapping file: {entity}.table must be a table name in quotes")
        table = entity
    if key is not None and (not isinstance(key, str) or not key):
        problems.append(f"mapping file: {entity}.key must be a column name in quotes")
        key = None
    columns: dict[str, str | None] = {}
    names = data_fields(entity)[1:]
    for name, column in _table_of(section, "columns", entity, problems).items():
        if name == "id":
            problems.append(f"mapping file: {entity}.columns.id: the id is the key; set {entity}.key instead")
        elif name not in names:
            problems.append(f"mapping file: {entity}.columns.{name} is not a field of {entity}; "
                            f"its fields: {', '.join(names)}")
        elif column is False or (isinstance(column, str) and column):
            columns[name] = column or None
        else:
            problems.append(f"mapping file: {entity}.columns.{name} must be a column name in quotes, or false")
    defaults: dict[str, Any] = {}
    for name, value in _table_of(section, "defaults", entity, problems).items():
        if isinstance(value, (str, int, float, bool)):
            defaults[name] = value
        elif isinstance(value, (datetime, date, time)):
            defaults[name] = _iso(value)
        else:
            problems.append(f"mapping file: {entity}.defaults.{name} must be a text, a number, true/false or a date")
    return MapRequest(entity, table, key, columns, defaults), problems


def _table_of(section: Mapping[str, Any], name: str, entity: str, problems: list[str]) -> Mapping[str, Any]:
    value = section.get(name, {})
    if isinstance(value, Mapping):
        return value
    problems.append(f"mapping file: {entity}.{name} must be a section ([{entity}.{name}])")
    return {}


def _iso(value: datetime | date | time) -> str:
    """A TOML date or time as text; a date-time without an offset is taken as UTC."""
    if isinstance(value, datetime):
        return canonical_time(value if value.tzinfo else value.replace(tzinfo=UTC))
    return value.isoformat()
