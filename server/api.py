"""The REST endpoints of the contract (§5): health, pull, push, number blocks, OpenAPI."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.routing import BaseConverter
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from craftsync.server import repository
from craftsync.server.auth import require_key
from craftsync.server.catalog import Catalog
from craftsync.server.errors import ApiError
from craftsync.server.openapi import build_openapi
from craftsync.server.params import read_number_block_request, read_pull_query
from craftsync.contract.records import ENTITIES, now_iso

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/api")
entities_bp = Blueprint("entities", __name__, url_prefix="/api")


class EntityConverter(BaseConverter):
    """A path segment naming an entity, or an unknown one (answered 404 by the view), but not
    the API's other endpoints: their unsupported methods are 405 with their own Allow."""

    regex = r"(?!(?:health|openapi\.json|number-blocks)$)[^/]+"


def engine() -> Engine:
    return current_app.extensions["craftsync.engine"]


def catalog() -> Catalog:
    return current_app.extensions["craftsync.catalog"]


@bp.get("/health")
def health() -> tuple[Response, int]:
    try:
        with engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("health check: database unreachable: %s", type(exc).__name__)
        return jsonify(status="error", message="Database unreachable", server_time=now_iso()), 503
    return jsonify(status="ok", message="Connected", server_time=now_iso()), 200


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(build_openapi())


@entities_bp.before_request
def _authenticate() -> None:
    require_key()


@entities_bp.get("/<entity:entity>")
def pull(entity: str) -> Response:
    _check_entity(entity)
    query = read_pull_query(request.args)
    repository.settle(engine(), catalog(), entity)
    with engine().connect() as conn:
        page = repository.pull(
            conn, catalog(), entity, since=int(query.since), limit=query.limit, updated_since=query.updatedSince, count=query.count
        )
    return jsonify(page)


@entities_bp.get("/<entity:entity>/<record_id>")
def get_one(entity: str, record_id: str) -> Response:
    _check_entity(entity)
    record = None
    if "\x00" not in record_id:  # no stored id holds NUL, and PostgreSQL refuses it in text
        repository.settle(engine(), catalog(), entity)
        with engine().connect() as conn:
            record = repository.get(conn, catalog(), entity, record_id)
    if record is None:
        raise ApiError(404, "not_found", f"No {entity} record has id {record_id!r}.")
    return jsonify(record)


#: Status code of a single-record POST, by outcome.
_SINGLE_STATUS = {"created": 201, "updated": 200, "unchanged": 200, "conflict": 409, "rejected": 422}


@entities_bp.post("/<entity:entity>")
def push(entity: str) -> tuple[Response, int]:
    _check_entity(entity)
    body = _json_body()
    if isinstance(body, dict) and set(body) == {"records"}:
        records = body["records"]
        if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
            raise ApiError(400, "bad_request", "'records' must be a list of records (JSON objects).")
        if len(records) > repository.MAX_BATCH:
            raise ApiError(400, "bad_request", f"A batch holds at most {repository.MAX_BATCH} records.")
        return jsonify(results=repository.push(engine(), catalog(), entity, records)), 200
    (result,) = repository.push(engine(), catalog(), entity, [body])
    return jsonify(result), _SINGLE_STATUS[result["status"]]


@entities_bp.post("/number-blocks")
def number_blocks() -> tuple[Response, int]:
    block = read_number_block_request(_json_body())
    return jsonify(repository.issue_number_block(engine(), block.entity, block.device_id, block.size)), 201


def _check_entity(entity: str) -> None:
    if entity not in ENTITIES:
        raise ApiError(404, "not_found", f"Unknown entity {entity!r}; use one of {', '.join(ENTITIES)}.")


def _json_body() -> Any:
    if not request.is_json:
        raise ApiError(400, "bad_request", "The body must be JSON (Content-Type: application/json).")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # absurdly deep nesting
        body = None
    if body is None:
        raise ApiError(400, "bad_request", "The body is not valid JSON.")
    return body
