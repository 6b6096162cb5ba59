"""Record lists with add, edit and delete, so that offline work and conflicts can be tried.

The UI stands in for the host app here: the local store writes the entity tables for it
with plain SQL (``worker.store_records``), so the change-capture triggers record its changes
exactly as they record the host app's. Deleting is a soft delete (``deleted_at``), as the
host app does it. This module reads the request and checks the values; it holds no SQL.

What the UI writes is the canonical form the server will hold ("1500" is stored "1500.00"),
so that the device and the server agree on every value from the start. A refused record
is answered with one message per field (``shell.field_messages``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from flask import Flask, Response, abort, jsonify, request

from craftsync.contract.records import ENTITIES, REFERENCES, InvalidRecord, data_fields, now_iso, validate
from craftsync.shell import field_messages
from craftsync.shell.errors import RecordRefused
from craftsync.worker.store import LocalStore

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

    @app.errorhandler(RecordRefused)
    def refused(exc: RecordRefused) -> tuple[Response, int]:
        return jsonify(error="invalid", message=exc.message, fields=exc.fields), 400

    @app.get("/api/records/<entity>")
    def list_records(entity: str) -> Response:
        entity_or_404(entity)
        limit, offset = _bounded("limit", 100, 1000), _bounded("offset", 0, 10**9)
        records, total = store().records.page(
            entity, filters=_filters(entity), search=request.args.get("q", "").strip(),
            search_fields=editable(entity), limit=limit, offset=offset,
        )
        return jsonify(records=records, total=total, fields=editable(entity))

    @app.get("/api/records/<entity>/choices")
    def choices(entity: str) -> Response:
        """A picker's matches: few, small, the best first."""
        entity_or_404(entity)
        limit = _bounded("limit", 10, 50)
        found = store().records.choices(entity, filters=_filters(entity), search=request.args.get("q", "").strip(),
                                        limit=limit)
        return jsonify(choices=found)

    @app.post("/api/records/<entity>")
    def create_record(entity: str) -> tuple[Response, int]:
        entity_or_404(entity)
        values = _values(store(), entity, {})
        record_id = store().records.create(entity, values)
        # Read it back: RETURNING does not show what AFTER triggers did (the quote's number).
        return jsonify(record=store().records.shown(entity, record_id)), 201

    @app.put("/api/records/<entity>/<record_id>")
    def update_record(entity: str, record_id: str) -> Response:
        entity_or_404(entity)
        current = _live(store(), entity, record_id)
        values = _values(store(), entity, current)
        values["updated_at"] = now_iso()
        store().records.update(entity, record_id, values)
        return jsonify(record=store().records.shown(entity, record_id))

    @app.delete("/api/records/<entity>/<record_id>")
    def delete_record(entity: str, record_id: str) -> tuple[str, int]:
        entity_or_404(entity)
        _live(store(), entity, record_id)
        store().records.soft_delete(entity, record_id, now_iso())
        return "", 204


# -- reading ------------------------------------------------------------------------------


def _filters(entity: str) -> dict[str, str]:
    """Of one customer or quote when ``?customer_id=`` / ``?quote_id=`` says so."""
    filters = {}
    for name in ("customer_id", "quote_id"):
        if name not in request.args:
            continue
        if name not in REFERENCES[entity]:
            abort(400, f"{entity} cannot be filtered by {name}.")
        filters[name] = request.args[name]
    return filters


def _bounded(name: str, default: int, maximum: int) -> int:
    raw = request.args.get(name, str(default))
    # ASCII digits only, and few: isdigit() takes "²" and "①", which int() refuses
    if not re.fullmatch(r"[0-9]{1,12}", raw) or int(raw) > maximum:
        abort(400, f"{name} must be a whole number up to {maximum}.")
    return int(raw)


def _live(store: LocalStore, entity: str, record_id: str) -> dict[str, Any]:
    record = store.records.live(entity, record_id)
    if record is None:
        abort(404, f"No {entity[:-1]} with id {record_id!r}.")
    return record


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
    return store.records.is_live(REFERENCES[entity][name], value)


def _blank_is_null(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value
