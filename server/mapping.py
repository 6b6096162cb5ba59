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
from typing import Any, Final

from sqlalchemy import Column, Connection, MetaData, String, Table, Text, inspect, select

from craftsync.contract.records import ENTITIES, data_fields

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


def load_maps(conn: Connection) -> dict[str, EntityMap]:
    """The maps stored in the database, or the native ones when it stores none."""
    if not inspect(conn).has_table(mapping_table.name):
        return dict(NATIVE)
    stored = {row.entity: EntityMap.from_json(row.entity, row.spec) for row in conn.execute(select(mapping_table))}
    return {entity: stored.get(entity, NATIVE[entity]) for entity in ENTITIES}
