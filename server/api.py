"""The REST endpoints of the contract (§5): health, pull, push, number blocks, OpenAPI."""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from craftsync.server import repository
from craftsync.server.auth import require_key
from craftsync.server.errors import ApiError
from craftsync.server.openapi import build_openapi
from craftsync.contract.records import ENTITIES, NUMBER_FIELDS, now_iso, parse_time

log = logging.getLogger(__name__)

#: A whole number that fits a BIGINT.
_DIGITS = re.compile(r"[0-9]{1,18}")

bp = Blueprint("api", __name__, url_prefix="/api")
entities_bp = Blueprint("entities", __name__, url_prefix="/api")


def engine() -> Engine:
    return current_app.extensions["craftsync.engine"]


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


@entities_bp.get("/<entity>")
def pull(entity: str) -> Response:
    _check_entity(entity)
    args = request.args
    since = _int_arg("since", default=0, minimum=0)
    limit = _int_arg("limit", default=repository.DEFAULT_LIMIT, minimum=1, maximum=repository.MAX_LIMIT)
    updated_since = None
    if "updatedSince" in args:
        try:
            updated_since = parse_time(args["updatedSince"])
        except ValueError:
            raise ApiError(400, "bad_request", "updatedSince must be an ISO-8601 date-time.") from None
    count = args.get("count", "false").lower() in ("1", "true", "yes")
    with engine().connect() as conn:
        page = repository.pull(conn, entity, since=since, limit=limit, updated_since=updated_since, count=count)
    return jsonify(page)


@entities_bp.get("/<entity>/<record_id>")
def get_one(entity: str, record_id: str) -> Response:
    _check_entity(entity)
    with engine().connect() as conn:
        record = repository.get(conn, entity, record_id)
    if record is None:
        raise ApiError(404, "not_found", f"No {entity} record has id {record_id!r}.")
    return jsonify(record)


#: Status code of a single-record POST, by outcome.
_SINGLE_STATUS = {"created": 201, "updated": 200, "unchanged": 200, "conflict": 409, "rejected": 422}


@entities_bp.post("/<entity>")
def push(entity: str) -> tuple[Response, int]:
    _check_entity(entity)
    body = _json_body()
    if isinstance(body, dict) and set(body) == {"records"}:
        records = body["records"]
        if not isinstance(records, list):
            raise ApiError(400, "bad_request", "'records' must be a list of records.")
        if len(records) > repository.MAX_BATCH:
            raise ApiError(400, "bad_request", f"A batch holds at most {repository.MAX_BATCH} records.")
        return jsonify(results=repository.push(engine(), entity, records)), 200
    (result,) = repository.push(engine(), entity, [body])
    return jsonify(result), _SINGLE_STATUS[result["status"]]


@entities_bp.post("/number-blocks")
def number_blocks() -> tuple[Response, int]:
    body = _json_body()
    if not isinstance(body, dict) or set(body) - {"entity", "device_id", "size"}:
        raise ApiError(400, "bad_request", "Send {\"entity\", \"device_id\", \"size\"}.")
    entity, device, size = body.get("entity"), body.get("device_id"), body.get("size", 100)
    if not isinstance(entity, str) or entity not in NUMBER_FIELDS:
        raise ApiError(400, "bad_request", f"entity must be one of {', '.join(NUMBER_FIELDS)}.")
    if not isinstance(device, str) or not 1 <= len(device) <= 64:
        raise ApiError(400, "bad_request", "device_id must be a string of 1 to 64 characters.")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= repository.MAX_NUMBER_BLOCK:
        raise ApiError(400, "bad_request", f"size must be a whole number from 1 to {repository.MAX_NUMBER_BLOCK}.")
    return jsonify(repository.issue_number_block(engine(), entity, device, size)), 201


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


def _int_arg(name: str, *, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw):
        raise ApiError(400, "bad_request", f"{name} must be a whole number.")
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise ApiError(400, "bad_request", f"{name} must be at least {minimum}{upper}.")
    return value

