"""The OpenAPI 3.1 description of the API, built from the same models that validate it."""

from __future__ import annotations

from functools import cache
from typing import Any, Final

from craftsync.contract.records import (
    ENTITIES,
    ID_SCHEMA,
    MODELS,
    data_fields,
    required_fields,
)
from craftsync.server.params import NumberBlockRequest, PullQuery, query_parameters
from craftsync.server.repository import MAX_BATCH

_ERROR = {"$ref": "#/components/schemas/Error"}

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


def _bare(schema: dict[str, Any]) -> dict[str, Any]:
    """A property's schema without pydantic's title and default (a field left out of an
    update is kept, not set to a default)."""
    return {key: value for key, value in schema.items() if key not in ("title", "default")}


def _record_schemas(entity: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema of a record as sent (input) and as served (output), from the entity's model."""
    generated = MODELS[entity].model_json_schema(mode="validation")
    properties = {name: _bare(schema) for name, schema in generated["properties"].items()}
    sent = {
        "type": "object",
        "properties": properties,
        # Only the id is needed in every record sent: an update may leave any field out.
        "required": ["id"],
        "additionalProperties": False,
        "description": (
            f"A {entity[:-1]} as pushed. A new record must also carry: "
            f"{', '.join(required_fields(entity)) or 'nothing more'}. " + PUSH_SEMANTICS
        ),
    }
    served = {
        "type": "object",
        "properties": {
            **{name: properties[name] for name in data_fields(entity)},
            "version": {"type": "integer", "minimum": 1},
        },
        "required": [*data_fields(entity), "version"],
        "additionalProperties": False,
        "description": f"A {entity[:-1]} as the server stores it, in canonical form, with its version.",
    }
    return sent, served


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
    # A batch is taken whatever its records hold: each is checked on its own, and one that
    # does not fit is 'rejected' in its result while the rest of the batch goes on.
    batch_record = {
        "anyOf": [record_in, {"type": "object"}],
        "description": f"A record; one that does not fit {name}Input is rejected in its result.",
    }
    batch = {
        "type": "object",
        "required": ["records"],
        "properties": {"records": {"type": "array", "maxItems": MAX_BATCH, "items": batch_record}},
        "additionalProperties": False,
    }
    read_created = {
        f"Get{name}Created": {
            "operationId": f"get_{entity}_record",
            "parameters": {"id": "$response.body#/id"},
            "description": "The record just created.",
        }
    }
    created = {**_json(result, "Single record created"), "links": read_created}
    # A batch's results name rejected records too, so only a single record's answer links
    # to the record stored.
    read_stored = {
        f"Get{name}Stored": {
            "operationId": f"get_{entity}_record",
            "parameters": {"id": "$response.body#/record/id"},
            "description": "The record as stored, when the answer carries it.",
        }
    }
    return {
        f"/api/{entity}": {
            "get": {
                "operationId": f"pull_{entity}",
                "summary": f"Changes of {entity} after a cursor, in server change order",
                "parameters": query_parameters(PullQuery),
                "responses": {"200": _json(page, "A page of changes"), **_errors(400, 401, 429)},
            },
            "post": {
                "operationId": f"push_{entity}",
                "summary": f"Create or update {entity}: one record, or a batch",
                "description": PUSH_SEMANTICS,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [batch, record_in]}}}},
                "responses": {
                    "200": {
                        **_json({"oneOf": [{"type": "object", "required": ["results"], "properties": {"results": {"type": "array", "items": result}}}, result]}, "Batch results, or a single record updated/unchanged"),
                        "links": read_stored,
                    },
                    "201": created,
                    "409": _json(result, "Single record in conflict; the server's record is included"),
                    "422": _json(result, "Single record rejected; the reason is included"),
                    **_errors(400, 401, 413, 429),
                },
            },
        },
        f"/api/{entity}/{{id}}": {
            "get": {
                "operationId": f"get_{entity}_record",
                "summary": f"One {entity} record, tombstones included",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": ID_SCHEMA}],
                "responses": {"200": _json({"$ref": f"#/components/schemas/{name}"}, "The record"), **_errors(401, 404, 429)},
            }
        },
    }


#: The answer to a number-block request.
_NUMBER_BLOCK: Final = {
    "type": "object",
    "required": ["entity", "first", "last", "first_number", "last_number"],
    "properties": {
        "entity": {"enum": ["quotes", "orders"]},
        "first": {"type": "integer", "minimum": 1},
        "last": {"type": "integer", "minimum": 1},
        "first_number": {"type": "string"},
        "last_number": {"type": "string"},
    },
}


def _number_block_request() -> dict[str, Any]:
    schema = NumberBlockRequest.model_json_schema()
    return {
        "type": "object",
        "required": schema["required"],
        "additionalProperties": False,
        "properties": {name: _bare(prop) for name, prop in schema["properties"].items()},
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
                "requestBody": {"required": True, "content": {"application/json": {"schema": _number_block_request()}}},
                "responses": {
                    "201": _json(_NUMBER_BLOCK, "The block"),
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
