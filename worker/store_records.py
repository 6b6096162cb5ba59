"""The local store's record lists for the UI: list, filter, search, pick, add, edit, delete.

Part of the local store (``LocalStore.records``): its statements run through the store's
connection and error boundary. The UI stands in for the host app here, so it writes the
entity tables with plain SQL and the change-capture triggers record its changes exactly as
they record the host app's. Deleting is a soft delete (``deleted_at``), as the host app does it.

A list shows each record with the names of the records it refers to (a quote's customer),
joined in as display fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from craftsync.contract.records import data_fields

if TYPE_CHECKING:
    from craftsync.worker.store import LocalStore, Row

#: Records referred to, joined in for display: alias -> (entity, the referring field).
JOINS: Final = {
    "customers": {},
    "quotes": {"c": ("customers", "customer_id")},
    "orders": {"c": ("customers", "customer_id"), "q": ("quotes", "quote_id")},
}
#: Display fields added to each record from the joined ones: name -> column.
SHOWN: Final = {
    "customers": {},
    "quotes": {"customer_name": "c.name", "customer_company": "c.company"},
    "orders": {"customer_name": "c.name", "customer_company": "c.company", "quote_number": "q.quote_number",
               "quote_project_name": "q.project_name"},
}
#: What a search of the list looks at besides the record's own fields.
SEARCHED: Final = {
    "customers": (),
    "quotes": ("c.name", "c.company"),
    "orders": ("c.name", "c.company", "q.quote_number", "q.project_name"),
}
#: What the pickers search (and show) for each entity they can pick.
CHOICE_SEARCH: Final = {
    "customers": ("t.name", "t.company", "t.email"),
    "quotes": ("t.quote_number", "t.project_name", "c.name", "c.company"),
    "orders": ("t.order_number", "c.name", "c.company"),
}
CHOICE_FIELDS: Final = {
    "customers": ("name", "company", "email", "city"),
    "quotes": ("quote_number", "project_name", "customer_id"),
    "orders": ("order_number", "quote_id", "customer_id"),
}
#: The field a picker's matches are ranked by: those starting with the text come first.
CHOICE_RANK: Final = {"customers": "t.name", "quotes": "t.quote_number", "orders": "t.order_number"}


class RecordQueries:
    """The UI's reads and writes of the host app's tables in one local store."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store

    def page(
        self, entity: str, *, filters: dict[str, str], search: str, search_fields: list[str], limit: int, offset: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of live records, latest edit first, and how many match in all.

        ``filters`` are referring fields and their values (``customer_id``); ``search``,
        when not empty, must occur in one of ``search_fields`` or the display fields."""
        where, args = _live_where(filters)
        if search:
            clause, more = _matching(search, [f"t.{name}" for name in search_fields] + list(SEARCHED[entity]))
            where, args = f"{where} AND {clause}", [*args, *more]
        counted = self.store.execute_one(f"SELECT count(*) FROM {_source(entity)} WHERE {where}", args)
        rows = self.store.execute(
            f"SELECT {_columns(entity)} FROM {_source(entity)} WHERE {where} "
            "ORDER BY t.updated_at DESC, t.id DESC LIMIT ? OFFSET ?",
            [*args, limit, offset],
        )
        return [_shown(entity, row) for row in rows], int(counted[0]) if counted else 0

    def choices(self, entity: str, *, filters: dict[str, str], search: str, limit: int) -> list[dict[str, Any]]:
        """A picker's matches: few, small, the best first (with nothing typed: the latest)."""
        where, args = _live_where(filters)
        order = "t.updated_at DESC, t.id DESC"
        if search:
            clause, more = _matching(search, CHOICE_SEARCH[entity])
            where, args = f"{where} AND {clause}", [*args, *more]
            order = f"({CHOICE_RANK[entity]} LIKE ? ESCAPE '\\') DESC, {CHOICE_RANK[entity]} COLLATE NOCASE, t.id"
            args.append(_escaped(search) + "%")
        own = ", ".join(f"t.{name} AS {name}" for name in ("id", *CHOICE_FIELDS[entity]))
        shown = "".join(f", {column} AS {name}" for name, column in SHOWN[entity].items())
        rows = self.store.execute(
            f"SELECT {own}{shown} FROM {_source(entity)} WHERE {where} ORDER BY {order} LIMIT ?", [*args, limit]
        )
        return [dict(row) for row in rows]

    def live(self, entity: str, record_id: str) -> dict[str, Any] | None:
        """The record's own fields, unless there is no such record or it is deleted."""
        row = self.store.execute_one(f"SELECT * FROM {entity} WHERE id = ? AND deleted_at IS NULL", (record_id,))
        return _plain(entity, row) if row is not None else None

    def is_live(self, entity: str, record_id: str) -> bool:
        """Whether a record with this id is on this computer and not deleted."""
        return self.store.execute_one(f"SELECT 1 FROM {entity} WHERE id = ? AND deleted_at IS NULL",
                                      (record_id,)) is not None

    def shown(self, entity: str, record_id: str) -> dict[str, Any]:
        """The record as the list shows it, display fields included."""
        row = self.store.execute_one(f"SELECT {_columns(entity)} FROM {_source(entity)} WHERE t.id = ?", (record_id,))
        return _shown(entity, row)

    def create(self, entity: str, values: dict[str, Any]) -> str:
        """Add a record with these field values; its id (made by the table's default)."""
        names = list(values)
        if names:
            statement = f"INSERT INTO {entity} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) RETURNING id"
        else:
            statement = f"INSERT INTO {entity} DEFAULT VALUES RETURNING id"
        row = self.store.execute_one(statement, [values[n] for n in names])
        assert row is not None, "INSERT ... RETURNING gives the new row"
        return str(row[0])

    def update(self, entity: str, record_id: str, values: dict[str, Any]) -> None:
        """Write these field values, and nothing else, into the record."""
        assignments = ", ".join(f"{name} = ?" for name in values)
        self.store.execute(f"UPDATE {entity} SET {assignments} WHERE id = ?", [*values.values(), record_id])

    def soft_delete(self, entity: str, record_id: str, when: str) -> None:
        self.store.execute(f"UPDATE {entity} SET deleted_at = ?, updated_at = ? WHERE id = ?", (when, when, record_id))


def _source(entity: str) -> str:
    """The entity's table as ``t``, with the records it refers to joined in (for their names)."""
    joins = "".join(
        f" LEFT JOIN {target} {alias} ON {alias}.id = t.{field}" for alias, (target, field) in JOINS[entity].items()
    )
    return f"{entity} t{joins}"


def _columns(entity: str) -> str:
    own = ", ".join(f"t.{name} AS {name}" for name in data_fields(entity))
    return own + "".join(f", {column} AS {name}" for name, column in SHOWN[entity].items())


def _live_where(filters: dict[str, str]) -> tuple[str, list[Any]]:
    """Live records, with each of ``filters`` (a referring field) equal to its value."""
    where, args = "t.deleted_at IS NULL", []
    for name, value in filters.items():
        where += f" AND t.{name} = ?"
        args.append(value)
    return where, args


def _escaped(text: str) -> str:
    """``text`` for LIKE ... ESCAPE '\\': the text as typed, % and _ are not wildcards."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _matching(q: str, columns: list[str] | tuple[str, ...]) -> tuple[str, list[Any]]:
    """A WHERE clause: any of ``columns`` contains ``q`` (case-insensitively for ASCII)."""
    pattern = f"%{_escaped(q)}%"
    return "(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in columns) + ")", [pattern] * len(columns)


def _plain(entity: str, row: Row) -> dict[str, Any]:
    return {name: row[name] for name in data_fields(entity)}


def _shown(entity: str, row: Row) -> dict[str, Any]:
    return {**_plain(entity, row), **{name: row[name] for name in SHOWN[entity]}}
