"""The OpenAPI 3.1 description of the API, built from the same models that validate it."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any, Final, get_args

from craftsync.contract.records import (
    ENTITIES,
    MODELS,
    NUMBER_FIELDS,
    REFERENCES,
    Day,
    Money,
    Percent,
    Timestamp,
    required_fields,
)
from craftsync.server.repository import MAX_BATCH, MAX_LIMIT, MAX_NUMBER_BLOCK

_ERROR = {"$ref": "#/components/schemas/Error"}
_HEX_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
#: A typed field (date, time, money, percentage, reference) sent empty holds null.
_BLANK = {"type": "string", "pattern": r"^\s*$", "description": "Empty: no value (stored as null)."}

#: What a POST does with the fields a record carries, and with those it leaves out.
PUSH_SEMANTICS: Final = (
    "A record may carry only some fields. For an update, a field left out keeps the value the "
    "server stores, and a field sent as null is cleared (a required field, such as a customer's "
    "name, cannot be cleared); an update that changes something and leaves out updated_at gets "
    "the server's time there. For a new record a field left out is null, except created_at and "
    "updated_at, which take the server's time; a new record must carry the required fields. "
    "A record whose fields equal what the server stores is 'unchanged', whatever its "
    "base_version (a retry changes nothing); otherwise a base_version other than the current "
    "version is a 'conflict' and nothing is written. The result carries 'record', the whole "
    "record as stored, whenever it differs from what was sent or the record left fields out. "
    "Columns of the central database that this API does not describe are never written."
)

#: The wire form of the fields whose validators pydantic cannot describe (they run before
#: or after the type check), keyed by the validators' metadata in ``contract.records``.
#: Money: up to 10 digits and 2 decimals (|x| <= 9999999999.99); percent: 0..100, 3 decimals.
_FORMATS: list[tuple[list[Any], dict[str, Any]]] = [
    (list(get_args(Money)[1:]), {"type": "string", "pattern": r"^-?[0-9]{1,10}(\.[0-9]{1,2})?$"}),
    (list(get_args(Percent)[1:]), {"type": "string", "pattern": r"^(100(\.0{1,3})?|[0-9]{1,2}(\.[0-9]{1,3})?)$"}),
    (list(get_args(Day)[1:]), {"type": "string", "format": "date"}),
    (list(get_args(Timestamp)[1:]), {"type": "string", "format": "date-time"}),
]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    words = {
        400: "Malformed request",
        401: "Missing or wrong API key",
        404: "Unknown entity or record",
        413: "Body over 16 MiB",
        429: "Rate limit exceeded; see Retry-After",
    }
    return {str(status): _json(_ERROR, words[status]) for status in statuses}


def _record_schemas(entity: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema of a record as sent (input) and as served (output)."""
    model = MODELS[entity]
    sent = model.model_json_schema(mode="validation")
    sent.pop("title", None)
    served_properties: dict[str, Any] = {}
    for name, prop in sent["properties"].items():
        field = model.model_fields[name]
        if name == "id":
            prop.update(_HEX_ID)
        elif name in REFERENCES[entity]:
            prop["anyOf"] = [_HEX_ID, {"type": "null"}]
        else:
            for metadata, wire in _FORMATS:
                if field.metadata == metadata:
                    prop["anyOf"] = [wire, {"type": "null"}]
        served_properties[name] = copy.deepcopy(prop)
        prop.pop("default", None)  # a field left out of an update is kept, not set to a default
        if name in REFERENCES[entity] or "anyOf" in prop and name != "id" and _is_typed(field.metadata):
            prop["anyOf"] = [*prop["anyOf"], _BLANK]  # accepted on the way in, never served
    served = {
        "type": "object",
        "properties": {
            **{k: v for k, v in served_properties.items() if k != "base_version"},
            "version": {"type": "integer", "minimum": 1},
        },
        "required": [*sent.get("required", []), "version"],
        "additionalProperties": False,
    }
    for name in ("created_at", "updated_at", "deleted_at"):
        served["properties"][name] = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}
    # Only the id is needed in every record sent: an update may leave any field out.
    sent["required"] = ["id"]
    sent["description"] = (
        f"A {entity[:-1]} as pushed. A new record must also carry: "
        f"{', '.join(required_fields(entity)) or 'nothing more'}. " + PUSH_SEMANTICS
    )
    return sent, served


def _is_typed(metadata: list[Any]) -> bool:
    """Whether a field's validators are those of a date, time, money or percentage field."""
    return any(metadata == typed for typed, _ in _FORMATS)


def _entity_paths(entity: str) -> dict[str, Any]:
    name = entity.capitalize()
    page = {
        "type": "object",
        "required": ["records", "next_cursor", "has_more"],
        "properties": {
            "records": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}},
            "next_cursor": {"type": "string"},
            "has_more": {"type": "boolean"},
            "remaining": {"type": "integer", "minimum": 0},
        },
    }
    result = {
        "type": "object",
        "required": ["id", "status"],
        "properties": {
            "id": {"type": ["string", "null"]},
            "status": {"enum": ["created", "updated", "unchanged", "conflict", "rejected"]},
            "version": {"type": "integer"},
            "record": {"$ref": f"#/components/schemas/{name}"},
            "reason": {"type": "string"},
        },
    }
    record_in = {"$ref": f"#/components/schemas/{name}Input"}
    batch = {
        "type": "object",
        "required": ["records"],
        "properties": {"records": {"type": "array", "maxItems": MAX_BATCH, "items": record_in}},
        "additionalProperties": False,
    }
    query = [
        {"name": "since", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
         "description": "Opaque cursor: next_cursor of the previous page; 0 or absent for the start."},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}},
        {"name": "count", "in": "query", "schema": {"type": "boolean"},
         "description": "Also answer 'remaining', the number of changes after the cursor."},
        {"name": "updatedSince", "in": "query", "schema": {"type": "string", "format": "date-time"}},
    ]
    return {
        f"/api/{entity}": {
            "get": {
                "summary": f"Changes of {entity} after a cursor, in server change order",
                "parameters": query,
                "responses": {"200": _json(page, "A page of changes"), **_errors(400, 401, 429)},
            },
            "post": {
                "summary": f"Create or update {entity}: one record, or a batch",
                "description": PUSH_SEMANTICS,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [batch, record_in]}}}},
                "responses": {
                    "200": _json({"oneOf": [{"type": "object", "required": ["results"], "properties": {"results": {"type": "array", "items": result}}}, result]}, "Batch results, or a single record updated/unchanged"),
                    "201": _json(result, "Single record created"),
                    "409": _json(result, "Single record in conflict; the server's record is included"),
                    "422": _json(result, "Single record rejected; the reason is included"),
                    **_errors(400, 401, 413, 429),
                },
            },
        },
        f"/api/{entity}/{{id}}": {
            "get": {
                "summary": f"One {entity} record, tombstones included",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json({"$ref": f"#/components/schemas/{name}"}, "The record"), **_errors(401, 404, 429)},
            }
        },
    }


@cache
def build_openapi() -> dict[str, Any]:
    """The whole document served at ``/api/openapi.json``."""
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        }
    }
    paths: dict[str, Any] = {
        "/api/health": {
            "get": {
                "summary": "Is the server up and its database reachable?",
                "security": [],
                "responses": {
                    "200": _json({"type": "object", "required": ["status", "message", "server_time"], "properties": {"status": {"const": "ok"}, "message": {"type": "string"}, "server_time": {"type": "string", "format": "date-time"}}}, "Connected"),
                    "503": _json({"type": "object", "required": ["status", "message"]}, "Database unreachable"),
                },
            }
        },
        "/api/number-blocks": {
            "post": {
                "summary": "Reserve a block of quote or order numbers for one device",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["entity", "device_id"],
                    "additionalProperties": False,
                    "properties": {
                        "entity": {"enum": list(NUMBER_FIELDS)},
                        "device_id": {"type": "string", "minLength": 1, "maxLength": 64},
                        "size": {"type": "integer", "minimum": 1, "maximum": MAX_NUMBER_BLOCK},
                    },
                }}}},
                "responses": {
                    "201": _json({"type": "object", "required": ["entity", "first", "last", "first_number", "last_number"]}, "The block"),
                    **_errors(400, 401, 413, 429),
                },
            }
        },
    }
    for entity in ENTITIES:
        sent, served = _record_schemas(entity)
        name = entity.capitalize()
        schemas[f"{name}Input"] = sent
        schemas[name] = served
        paths.update(_entity_paths(entity))
    return {
        "openapi": "3.1.0",
        "info": {"title": "CraftSync remote API", "version": "1"},
        "servers": [{"url": "/"}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
