"""Record lists with add, edit and delete, so that offline work and conflicts can be tried.

The UI stands in for the host app here: it writes the entity tables with plain SQL, so the
change-capture triggers record its changes exactly as they record the host app's.
Deleting is a soft delete (``deleted_at``), as the host app does it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from flask import Flask, Response, abort, jsonify, request

from server.records import ENTITIES, InvalidRecord, data_fields, now_iso, validate
from worker.store import LocalStore

#: Fields the user never edits: the id is made by the database, the times by the edits.
READ_ONLY: Final = ("id", "created_at", "updated_at", "deleted_at")


def editable(entity: str) -> list[str]:
    return [name for name in data_fields(entity) if name not in READ_ONLY]


def register(app: Flask, store: Callable[[], LocalStore]) -> None:
    """Add the record endpoints to the UI app; ``store`` gives the request's local store."""

    def entity_or_404(entity: str) -> str:
        if entity not in ENTITIES:
            abort(404, f"Unknown entity {entity!r}.")
        return entity

    @app.get("/api/records/<entity>")
    def list_records(entity: str) -> Response:
        entity_or_404(entity)
        q = request.args.get("q", "").strip()
        limit, offset = _bounded("limit", 100, 1000), _bounded("offset", 0, 10**9)
        columns = editable(entity)
        where, args = "deleted_at IS NULL", []
        if q:  # the text as typed: % and _ are not wildcards
            pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where += " AND (" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in columns) + ")"
            args = [pattern] * len(columns)
        conn = store().conn
        total = conn.execute(f"SELECT count(*) FROM {entity} WHERE {where}", args).fetchone()[0]
        rows = conn.execute(
            f"SELECT * FROM {entity} WHERE {where} ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()
        return jsonify(records=[_plain(entity, r) for r in rows], total=total, fields=columns)

    @app.post("/api/records/<entity>")
    def create_record(entity: str) -> tuple[Response, int]:
        entity_or_404(entity)
        values = _values(entity, {})
        conn = store().conn
        names = list(values)
        if names:
            marks = ", ".join("?" * len(names))
            statement = f"INSERT INTO {entity} ({', '.join(names)}) VALUES ({marks}) RETURNING id"
        else:
            statement = f"INSERT INTO {entity} DEFAULT VALUES RETURNING id"
        record_id = conn.execute(statement, [values[n] for n in names]).fetchone()[0]
        # Read it back: RETURNING does not show what AFTER triggers did (the quote's number).
        return jsonify(record=_live(store(), entity, record_id)), 201

    @app.put("/api/records/<entity>/<record_id>")
    def update_record(entity: str, record_id: str) -> Response:
        entity_or_404(entity)
        current = _live(store(), entity, record_id)
        values = _values(entity, current)
        values["updated_at"] = now_iso()
        assignments = ", ".join(f"{n} = ?" for n in values)
        store().conn.execute(f"UPDATE {entity} SET {assignments} WHERE id = ?", [*values.values(), record_id])
        return jsonify(record=_live(store(), entity, record_id))

    @app.delete("/api/records/<entity>/<record_id>")
    def delete_record(entity: str, record_id: str) -> tuple[str, int]:
        entity_or_404(entity)
        _live(store(), entity, record_id)
        now = now_iso()
        store().conn.execute(f"UPDATE {entity} SET deleted_at = ?, updated_at = ? WHERE id = ?", (now, now, record_id))
        return "", 204


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


def _values(entity: str, current: dict[str, Any]) -> dict[str, Any]:
    """The edited fields of the request, checked as the server will check the record."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "The body must be a JSON object of field values.")
    unknown = set(body) - set(editable(entity)) - set(READ_ONLY)
    if unknown:
        abort(400, f"Not fields of {entity}: {', '.join(sorted(unknown))}.")
    values = {name: _blank_is_null(body[name]) for name in editable(entity) if name in body}
    candidate = {**current, **values, "id": current.get("id") or "0" * 32}
    try:
        validate(entity, {k: v for k, v in candidate.items() if k in data_fields(entity)})
    except InvalidRecord as exc:
        abort(400, str(exc))
    return values


def _blank_is_null(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _plain(entity: str, row: Any) -> dict[str, Any]:
    return {name: row[name] for name in data_fields(entity)}
