"""Record lists with add, edit and delete, so that offline work and conflicts can be tried.

The UI stands in for the host app here: it writes the entity tables with plain SQL, so the
change-capture triggers record its changes exactly as they record the host app's.
Deleting is a soft delete (``deleted_at``), as the host app does it.

What the UI writes is the canonical form the server will hold ("1500" is stored "1500.00"),
so that the device and the server agree on every value from the start. A refused record
is answered with one message per field (``shell.field_messages``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from flask import Flask, Response, abort, jsonify, request

from craftsync.contract.records import ENTITIES, REFERENCES, InvalidRecord, data_fields, now_iso, validate
from craftsync.shell import field_messages
from craftsync.worker.store import LocalStore

#: Fields the user never edits: the id is made by the database, the times by the edits.
READ_ONLY: Final = ("id", "created_at", "updated_at", "deleted_at")
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


class RecordRefused(Exception):
    """A record that cannot be saved: the fields' messages, and the one-line summary."""

    def __init__(self, fields: dict[str, str], message: str | None = None) -> None:
        super().__init__(message or field_messages.summary(fields))
        self.fields = fields
        self.message = message or field_messages.summary(fields)


def editable(entity: str) -> list[str]:
    return [name for name in data_fields(entity) if name not in READ_ONLY]


def register(app: Flask, store: Callable[[], LocalStore]) -> None:
    """Add the record endpoints to the UI app; ``store`` gives the request's local store."""

    def entity_or_404(entity: str) -> str:
        if entity not in ENTITIES:
            abort(404, f"Unknown entity {entity!r}.")
        return entity

    @app.errorhandler(RecordRefused)
    def refused(exc: RecordRefused) -> tuple[Response, int]:
        return jsonify(error="invalid", message=exc.message, fields=exc.fields), 400

    @app.get("/api/records/<entity>")
    def list_records(entity: str) -> Response:
        entity_or_404(entity)
        limit, offset = _bounded("limit", 100, 1000), _bounded("offset", 0, 10**9)
        where, args = _filters(entity)
        q = request.args.get("q", "").strip()
        if q:
            searched = [f"t.{c}" for c in editable(entity)] + list(SEARCHED[entity])
            clause, more = _matching(q, searched)
            where, args = f"{where} AND {clause}", [*args, *more]
        conn = store().conn
        total = conn.execute(f"SELECT count(*) FROM {_source(entity)} WHERE {where}", args).fetchone()[0]
        rows = conn.execute(
            f"SELECT {_columns(entity)} FROM {_source(entity)} WHERE {where} "
            "ORDER BY t.updated_at DESC, t.id DESC LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()
        return jsonify(records=[_shown(entity, r) for r in rows], total=total, fields=editable(entity))

    @app.get("/api/records/<entity>/choices")
    def choices(entity: str) -> Response:
        """A picker's matches: few, small, the best first."""
        entity_or_404(entity)
        limit = _bounded("limit", 10, 50)
        where, args = _filters(entity)
        q = request.args.get("q", "").strip()
        order = "t.updated_at DESC, t.id DESC"  # with nothing typed yet: the latest first
        if q:
            clause, more = _matching(q, CHOICE_SEARCH[entity])
            where, args = f"{where} AND {clause}", [*args, *more]
            order = f"({CHOICE_RANK[entity]} LIKE ? ESCAPE '\\') DESC, {CHOICE_RANK[entity]} COLLATE NOCASE, t.id"
            args.append(_escaped(q) + "%")
        own = ", ".join(f"t.{name} AS {name}" for name in ("id", *CHOICE_FIELDS[entity]))
        shown = "".join(f", {column} AS {name}" for name, column in SHOWN[entity].items())
        rows = store().conn.execute(
            f"SELECT {own}{shown} FROM {_source(entity)} WHERE {where} ORDER BY {order} LIMIT ?", [*args, limit]
        ).fetchall()
        return jsonify(choices=[dict(r) for r in rows])

    @app.post("/api/records/<entity>")
    def create_record(entity: str) -> tuple[Response, int]:
        entity_or_404(entity)
        values = _values(store(), entity, {})
        conn = store().conn
        names = list(values)
        if names:
            marks = ", ".join("?" * len(names))
            statement = f"INSERT INTO {entity} ({', '.join(names)}) VALUES ({marks}) RETURNING id"
        else:
            statement = f"INSERT INTO {entity} DEFAULT VALUES RETURNING id"
        record_id = conn.execute(statement, [values[n] for n in names]).fetchone()[0]
        # Read it back: RETURNING does not show what AFTER triggers did (the quote's number).
        return jsonify(record=_answer(store(), entity, record_id)), 201

    @app.put("/api/records/<entity>/<record_id>")
    def update_record(entity: str, record_id: str) -> Response:
        entity_or_404(entity)
        current = _live(store(), entity, record_id)
        values = _values(store(), entity, current)
        values["updated_at"] = now_iso()
        assignments = ", ".join(f"{n} = ?" for n in values)
        store().conn.execute(f"UPDATE {entity} SET {assignments} WHERE id = ?", [*values.values(), record_id])
        return jsonify(record=_answer(store(), entity, record_id))

    @app.delete("/api/records/<entity>/<record_id>")
    def delete_record(entity: str, record_id: str) -> tuple[str, int]:
        entity_or_404(entity)
        _live(store(), entity, record_id)
        now = now_iso()
        store().conn.execute(f"UPDATE {entity} SET deleted_at = ?, updated_at = ? WHERE id = ?", (now, now, record_id))
        return "", 204


# -- reading ------------------------------------------------------------------------------


def _source(entity: str) -> str:
    """The entity's table as ``t``, with the records it refers to joined in (for their names)."""
    joins = "".join(
        f" LEFT JOIN {target} {alias} ON {alias}.id = t.{field}" for alias, (target, field) in JOINS[entity].items()
    )
    return f"{entity} t{joins}"


def _columns(entity: str) -> str:
    own = ", ".join(f"t.{name} AS {name}" for name in data_fields(entity))
    return own + "".join(f", {column} AS {name}" for name, column in SHOWN[entity].items())


def _filters(entity: str) -> tuple[str, list[Any]]:
    """Live records, of one customer or quote when ``?customer_id=`` / ``?quote_id=`` says so."""
    where, args = "t.deleted_at IS NULL", []
    for name in ("customer_id", "quote_id"):
        if name not in request.args:
            continue
        if name not in REFERENCES[entity]:
            abort(400, f"{entity} cannot be filtered by {name}.")
        where += f" AND t.{name} = ?"
        args.append(request.args[name])
    return where, args


def _escaped(text: str) -> str:
    """``text`` for LIKE ... ESCAPE '\\': the text as typed, % and _ are not wildcards."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _matching(q: str, columns: list[str] | tuple[str, ...]) -> tuple[str, list[Any]]:
    """A WHERE clause: any of ``columns`` contains ``q`` (case-insensitively for ASCII)."""
    pattern = f"%{_escaped(q)}%"
    return "(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in columns) + ")", [pattern] * len(columns)


def _bounded(name: str, default: int, maximum: int) -> int:
    raw = request.args.get(name, str(default))
    if not raw.isdigit() or int(raw) > maximum:
        abort(400, f"{name} must be a whole number up to {maximum}.")
    return int(raw)


def _live(store: LocalStore, entity: str, record_id: str) -> dict[str, Any]:
    row = store.conn.execute(f"SELECT * FROM {entity} WHERE id = ? AND deleted_at IS NULL", (record_id,)).fetchone()
    if row is None:
        abort(404, f"No {entity[:-1]} with id {record_id!r}.")
    return _plain(entity, row)


def _answer(store: LocalStore, entity: str, record_id: str) -> dict[str, Any]:
    """The record as the list shows it, display fields included."""
    statement = f"SELECT {_columns(entity)} FROM {_source(entity)} WHERE t.id = ?"
    return _shown(entity, store.conn.execute(statement, (record_id,)).fetchone())


def _plain(entity: str, row: Any) -> dict[str, Any]:
    return {name: row[name] for name in data_fields(entity)}


def _shown(entity: str, row: Any) -> dict[str, Any]:
    return {**_plain(entity, row), **{name: row[name] for name in SHOWN[entity]}}


# -- writing ------------------------------------------------------------------------------


def _values(store: LocalStore, entity: str, current: dict[str, Any]) -> dict[str, Any]:
    """The fields the request sent, in the canonical form the server will hold.

    The whole record (as it is, with the request's changes) is checked as the server will
    check it; only the sent fields are returned, so that an edit writes nothing else.
    """
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "The body must be a JSON object of field values.")
    unknown = set(body) - set(editable(entity)) - set(READ_ONLY)
    if unknown:
        abort(400, f"Not fields of {entity}: {', '.join(sorted(unknown))}.")
    values = {name: _blank_is_null(body[name]) for name in editable(entity) if name in body}
    candidate = {**current, **values, "id": current.get("id") or "0" * 32}
    candidate = {k: v for k, v in candidate.items() if k in data_fields(entity)}
    problems = field_messages.field_errors(entity, candidate)
    for name in REFERENCES[entity]:
        if name in values and name not in problems and not _refers_to_live(store, entity, name, values[name]):
            problems[name] = field_messages.reference_message(entity, name)
    if problems:
        raise RecordRefused({k: v for k, v in problems.items() if k}, _general(problems))
    try:
        canonical, _ = validate(entity, candidate)
    except InvalidRecord as exc:  # field_errors found nothing the server's own check finds
        abort(400, str(exc))
    return {name: canonical[name] for name in values}


def _general(problems: dict[str, str]) -> str | None:
    """The summary, unless a problem is record-wide (no field to show it at): then that."""
    if "" in problems:
        return problems[""]
    return None


def _refers_to_live(store: LocalStore, entity: str, name: str, value: Any) -> bool:
    """Whether a reference names a record on this computer that is not deleted (or nothing)."""
    if value is None:
        return True
    target = REFERENCES[entity][name]
    row = store.conn.execute(f"SELECT 1 FROM {target} WHERE id = ? AND deleted_at IS NULL", (value,)).fetchone()
    return row is not None


def _blank_is_null(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value
