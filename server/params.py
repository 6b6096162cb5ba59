"""What the non-record inputs of the API may be: a pull's query and a number-block request.

Each is one pydantic model, which both reads the request (``read_pull_query``,
``read_number_block_request``) and gives the OpenAPI document its parameters and body
schema, so that the document says exactly what the server accepts. Every refusal is an
``ApiError`` 400 with a one-line message naming the input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError, WithJsonSchema
from werkzeug.datastructures import MultiDict

from craftsync.contract.records import TIME_PATTERN, TEXT_PATTERN, anchored, parse_time
from craftsync.server.errors import ApiError
from craftsync.server.repository import DEFAULT_LIMIT, MAX_LIMIT, MAX_NUMBER_BLOCK

M = TypeVar("M", bound=BaseModel)

#: A whole number as a query string spells it, small enough for a BIGINT.
_DIGITS = re.compile(r"[0-9]{1,18}")


def _query_int(value: Any) -> Any:
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise ValueError("not a whole number")
        return int(value)
    return value


def _query_cursor(value: Any) -> Any:
    if not (isinstance(value, str) and _DIGITS.fullmatch(value)):
        raise ValueError("not a cursor")
    return value


def _query_bool(value: Any) -> Any:
    if value in ("true", "false"):
        return value == "true"
    raise ValueError("not true or false")


def _query_time(value: Any) -> str | None:
    return parse_time(value)


def _integral(value: Any) -> Any:
    """A JSON number with no fraction (``100.0``) as the integer it is."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class PullQuery(BaseModel):
    """The query of ``GET /api/{entity}``."""

    model_config = ConfigDict(extra="ignore", regex_engine="python-re")

    since: Annotated[
        str, BeforeValidator(_query_cursor),
        WithJsonSchema({"type": "string", "pattern": f"^{_DIGITS.pattern}$",
                        "description": "Opaque cursor: next_cursor of the previous page; 0 or absent for the start."}),
    ] = "0"
    limit: Annotated[
        int, Field(ge=1, le=MAX_LIMIT, description=f"Records per page (default {DEFAULT_LIMIT})."),
        BeforeValidator(_query_int),
    ] = DEFAULT_LIMIT
    count: Annotated[
        bool, BeforeValidator(_query_bool),
        WithJsonSchema({"type": "boolean", "description": "Also answer 'remaining', the number of changes after the cursor."}),
    ] = False
    updatedSince: Annotated[  # noqa: N815 (the original package's spelling)
        str | None, BeforeValidator(_query_time),
        WithJsonSchema({"type": "string", "pattern": anchored(TIME_PATTERN),
                        "description": "Only changes the server made at or after this ISO-8601 time."}),
    ] = None


#: The one-line refusal of each query parameter.
_QUERY_MESSAGES: Final = {
    "since": "since must be a whole number (a cursor the server gave).",
    "limit": f"limit must be a whole number from 1 to {MAX_LIMIT}.",
    "count": "count must be true or false.",
    "updatedSince": "updatedSince must be an ISO-8601 date-time.",
}


def read_pull_query(args: MultiDict[str, str]) -> PullQuery:
    """The pull query of a request's arguments; ApiError 400 if one is bad or given twice."""
    for name in PullQuery.model_fields:
        if len(args.getlist(name)) > 1:
            raise ApiError(400, "bad_request", f"{name} is given more than once.")
    return _read(PullQuery, args.to_dict(), _QUERY_MESSAGES)


class NumberBlockRequest(BaseModel):
    """The body of ``POST /api/number-blocks``."""

    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")

    entity: Literal["quotes", "orders"]
    device_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=anchored(TEXT_PATTERN))]
    size: Annotated[int, Field(ge=1, le=MAX_NUMBER_BLOCK), BeforeValidator(_integral)] = 100


_BLOCK_MESSAGES: Final = {
    "entity": "entity must be one of quotes, orders.",
    "device_id": "device_id must be a string of 1 to 64 characters (no NUL).",
    "size": f"size must be a whole number from 1 to {MAX_NUMBER_BLOCK}.",
}


def read_number_block_request(body: Any) -> NumberBlockRequest:
    """The number-block request of a JSON body; ApiError 400 if it is not one."""
    if not isinstance(body, dict) or set(body) - set(NumberBlockRequest.model_fields):
        raise ApiError(400, "bad_request", 'Send {"entity", "device_id", "size"}.')
    return _read(NumberBlockRequest, body, _BLOCK_MESSAGES)


def _read(model: type[M], data: Mapping[str, Any], messages: Mapping[str, str]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        field = str(exc.errors(include_url=False)[0]["loc"][0])
        raise ApiError(400, "bad_request", messages.get(field, f"{field} is not valid.")) from None


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The OpenAPI parameters of a query model."""
    properties = model.model_json_schema()["properties"]
    parameters = []
    for name, schema in properties.items():
        schema = {key: value for key, value in schema.items() if key not in ("title", "default")}
        description = schema.pop("description", None)
        parameter = {"name": name, "in": "query", "schema": schema}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters
