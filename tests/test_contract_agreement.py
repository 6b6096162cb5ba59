"""The server's tables, the device's tables and the contract hold the same fields.

The contract (``contract.records``) lists each entity's fields; the server's tables are
declared from it, and the local store's migration spells its columns out. This reads both
databases back as migrated, not the code that declares them, and compares them with the
contract: the same fields in the same order, text columns as long as the contract allows,
required fields NOT NULL and references as foreign keys on the server.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import String, inspect

from craftsync.contract.records import (
    COMMON_FIELDS,
    ENTITIES,
    REFERENCES,
    data_fields,
    max_length,
    own_fields,
    required_fields,
)
from craftsync.server.db import make_engine, migrate
from craftsync.worker import store

#: The columns of an entity's bookkeeping table beside it: the row's key, the record's id and
#: version, its place in the change feed, when it changed, and when its row went.
SERVER_BOOKKEEPING = ["row_key", "id", "version", "seq", "changed_at", "deleted_at"]


def stored_order(entity: str) -> list[str]:
    """The contract's fields in the order both stores keep them: id, own fields, times."""
    times = [name for name in COMMON_FIELDS if name != "id"]
    return ["id", *own_fields(entity), *times]


def test_server_tables_local_tables_and_contract_hold_the_same_fields(database_url: str, tmp_path: Path) -> None:
    # Given a central database migrated as the server does it
    engine = make_engine(database_url)
    migrate(engine)
    # And a new local database migrated as every craftsync command does it
    local_path = tmp_path / "device.db"
    store.migrate(local_path)

    try:
        inspector = inspect(engine)
        with sqlite3.connect(local_path) as local:
            for entity in ENTITIES:
                contract = stored_order(entity)
                assert sorted(contract) == sorted(data_fields(entity)), entity

                # Then the server's table has the contract's fields, in order, and its bookkeeping
                # lives beside it
                columns = {column["name"]: column for column in inspector.get_columns(entity)}
                assert list(columns) == contract, entity
                book = [column["name"] for column in inspector.get_columns(f"craftsync_{entity}")]
                assert book == SERVER_BOOKKEEPING, entity
                # And each text column is as long as the contract lets the field be
                for name in contract:
                    limit = max_length(entity, name)
                    if limit is not None and limit <= 500:  # longer ones (notes) are TEXT
                        column_type = columns[name]["type"]
                        assert isinstance(column_type, String) and column_type.length == limit, (entity, name)
                # And a required field cannot be null there
                for name in required_fields(entity):
                    assert columns[name]["nullable"] is False, (entity, name)
                # And every reference of the contract is a foreign key to its entity
                keys = {
                    (tuple(key["constrained_columns"]), key["referred_table"])
                    for key in inspector.get_foreign_keys(entity)
                }
                assert keys == {((field,), target) for field, target in REFERENCES[entity].items()}, entity

                # And the local table has exactly the contract's fields, in the same order
                local_columns = [row[1] for row in local.execute(f"PRAGMA table_info({entity})")]
                assert local_columns == contract, entity
    finally:
        engine.dispose()


def test_the_contract_document_lists_the_same_fields_as_the_contract_module() -> None:
    # docs/CONTRACT.md §4 is the contract's own text; it is read, not generated, so it must
    # be kept in step by hand: this says when it is not.
    document = (Path(__file__).resolve().parents[1] / "docs" / "CONTRACT.md").read_text()
    listed = {}
    for line in document.splitlines():
        for entity in ENTITIES:
            prefix = f"- `{entity}`: "
            if line.startswith(prefix):
                listed[entity] = [name.strip() for name in line[len(prefix):].split(",")]
    assert set(listed) == set(ENTITIES), f"CONTRACT.md §4 lists {sorted(listed)}"
    for entity in ENTITIES:
        assert listed[entity] == stored_order(entity), entity
