"""The wire format of the three entities: validation and canonical values.

One pydantic model per entity says which fields a record may carry, of which type and
length. Validation is strict where the contract needs it to be: money and percentages are
decimal strings (a JSON float is refused, it is binary), ids are 32 lowercase hex digits,
times are ISO-8601 and come back in UTC with millisecond precision, and an unknown field
is an error, never silently dropped.

A typed field (date, time, money, percentage, reference) left empty, as a form or the host
app's plain SQL may save it, holds no value: ``""`` is read as null. Text keeps ``""``.

Both the server and the sync client use these models, so a record means the same thing on
either side of the wire. ``validate`` reads a whole record (a field left out is null);
``validate_fields`` reads only the fields a pushed record carries, for the server's
partial updates (a field left out keeps its stored value).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from enum import StrEnum
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    create_model,
    model_validator,
)
from pydantic.fields import FieldInfo

from craftsync.contract.vocabulary import Entity, values

ENTITIES: Final = values(Entity)  # in dependency order: a quote needs its customer

#: Fields that every entity has besides its own.
COMMON_FIELDS: Final = ("id", "created_at", "updated_at", "deleted_at")

_ID_RE = re.compile(r"[0-9a-f]{32}")

# -- the wire forms, as regular expressions -------------------------------------------------
#
# Each typed field is checked against one of these patterns before its value is read, and the
# OpenAPI document gives the same patterns, so that the two cannot disagree. They are written
# for both Python's and JavaScript's regular expressions (no \d or \s, whose meanings differ),
# and the server matches them whole, as JSON Schema's "^...$" means (Python's $ also matches
# before a final newline).

_YEAR = r"(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"  # 0001 to 9999
_MONTH_DAY = r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
_LEAP_DAY = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)-02-29"
#: A calendar date, YYYY-MM-DD (29 February in leap years only).
DATE_PATTERN: Final = rf"(?P<date>{_YEAR}-{_MONTH_DAY}|{_LEAP_DAY})"
#: A time of day, HH:MM with optional seconds and fraction, and an optional offset (none: UTC).
_CLOCK = (
    r"(?P<hour>[01][0-9]|2[0-3]):(?P<minute>[0-5][0-9])"
    r"(?::(?P<second>[0-5][0-9])(?:\.(?P<fraction>[0-9]{1,9}))?)?"
    r"(?P<zone>Z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])?"
)
#: A date-time. On the calendar's first day it may not be ahead of UTC, on its last not
#: behind it, so that every time accepted is a time of years 1 to 9999 in UTC.
TIME_PATTERN: Final = rf"(?!0001-01-01[T ].*\+)(?!9999-12-31[T ].*-){DATE_PATTERN}[T ]{_CLOCK}"
#: The characters that count as space. Spelled out: Python's \s and JavaScript's differ.
SPACE: Final = r" \t\n\r\f\v"
#: Money: at most 10 digits and 2 decimal places (further zeros aside), negative for a credit;
#: space around it, as loose text from a host app may have, is dropped.
MONEY_PATTERN: Final = rf"[{SPACE}]*-?[0-9]{{1,10}}(?:\.[0-9]{{1,2}}0*)?[{SPACE}]*"
#: A percentage from 0 to 100 with at most 3 decimal places (further zeros aside).
PERCENT_PATTERN: Final = rf"[{SPACE}]*(?:100(?:\.0+)?|[0-9]{{1,2}}(?:\.[0-9]{{1,3}}0*)?)[{SPACE}]*"
#: An empty or all-space value of a typed field: no value.
BLANK_PATTERN: Final = rf"[{SPACE}]*"
#: Text: anything but NUL, which PostgreSQL cannot store.
TEXT_PATTERN: Final = r"[^\x00]*"


def anchored(pattern: str) -> str:
    """``pattern`` as a JSON Schema pattern: it must match the whole value, and its named
    groups (which only Python's regular expressions spell ``(?P<name>``) are plain groups."""
    return "^(?:" + re.sub(r"\(\?P<\w+>", "(?:", pattern) + ")$"


_TIME_RE = re.compile(TIME_PATTERN)
_DATE_RE = re.compile(rf"{DATE_PATTERN}(?:[T ]{_CLOCK})?")
_MONEY_RE = re.compile(MONEY_PATTERN)
_PERCENT_RE = re.compile(PERCENT_PATTERN)
_BLANK_RE = re.compile(BLANK_PATTERN)
_SPACE_CHARS = " \t\n\r\f\v"


def canonical_time(value: datetime) -> str:
    """ISO-8601 in UTC with milliseconds, the one form times take on the wire."""
    if value.tzinfo is None:  # SQLite's datetime('now') writes naive UTC
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    # %Y does not pad years before 1000 on every platform; times must sort as text.
    return f"{value.year:04d}-" + value.strftime("%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def now_iso() -> str:
    """The current time in the wire form."""
    return canonical_time(datetime.now(UTC))


def parse_time(value: Any) -> str | None:
    """A date-time of ``TIME_PATTERN`` (no offset means UTC) in canonical form; ValueError if
    it is none."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("must be an ISO-8601 date-time string")
    match = _TIME_RE.fullmatch(value)
    if match is None:
        raise ValueError("is not an ISO-8601 date-time (YYYY-MM-DDTHH:MM[:SS[.fff]][Z|+HH:MM]), in years 1 to 9999 UTC")
    if value[10] == "T" and match["zone"] == "Z" and len(match["fraction"] or "") == 3:
        return value  # already the canonical form (the pattern checked the calendar), as most times on the wire are
    return canonical_time(_datetime(match))


def _datetime(match: re.Match[str]) -> datetime:
    """The datetime that a match of the date-time pattern spells."""
    day = date.fromisoformat(match["date"])
    zone = match["zone"]
    tzinfo = UTC
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + int(digits[2:])
        tzinfo = timezone(timedelta(minutes=minutes if zone[0] == "+" else -minutes))
    return datetime(
        day.year, day.month, day.day, int(match["hour"]), int(match["minute"]), int(match["second"] or 0),
        int((match["fraction"] or "0")[:6].ljust(6, "0")), tzinfo=tzinfo,
    )


def _parse_date(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("must be an ISO-8601 date string (YYYY-MM-DD)")
    match = _DATE_RE.fullmatch(value)
    if match is None:  # a date-time's date part is kept, as written
        raise ValueError("is not an ISO-8601 date (YYYY-MM-DD)")
    return match["date"]


def _decimal_parser(places: int, pattern: re.Pattern[str], description: str) -> Any:
    quantum = Decimal(1).scaleb(-places)

    def parse(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("must be a decimal string such as \"12.50\" (a JSON number is refused: floats lose cents)")
        if not pattern.fullmatch(value):
            raise ValueError(f"must be {description}")
        return str(Decimal(value.strip(_SPACE_CHARS)).quantize(quantum))

    return parse


def _blank_is_null(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``parse``, except that an empty (or all-space) string is no value: null.

    Host apps save an empty form field as ``''``; for a date or an amount that means "none",
    and the server stores null, so that every side holds the same thing.
    """

    def parse_or_null(value: Any) -> Any:
        if isinstance(value, str) and _BLANK_RE.fullmatch(value):
            return None
        return parse(value)

    return parse_or_null


def _check_id(value: str) -> str:
    if not _ID_RE.fullmatch(value):
        raise ValueError("must be 32 lowercase hex digits (a UUID without dashes)")
    return value


def _integral(value: Any) -> Any:
    """A JSON number with no fraction (``3.0``) as the integer it is: JSON has one number type."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class Kind(StrEnum):
    """What a field holds; it decides the field's column and its wire form."""

    ID = "id"
    REFERENCE = "reference"  # the id of another entity's record
    TIME = "time"
    DATE = "date"
    MONEY = "money"
    PERCENT = "percent"
    TEXT = "text"  # of a bounded length
    LONG_TEXT = "long_text"  # notes: a text column without a declared length


_NULL: Final = {"type": "null"}
_BLANK: Final = {"type": "string", "pattern": anchored(BLANK_PATTERN), "description": "Empty: no value (stored as null)."}
#: The JSON Schema of an id as the contract checks it.
ID_SCHEMA: Final = {"type": "string", "pattern": "^[0-9a-f]{32}$"}


def _typed(schema: dict[str, Any]) -> WithJsonSchema:
    """The JSON Schema of a typed field: its wire form, null, or blank (null too)."""
    return WithJsonSchema({"anyOf": [schema, _NULL, _BLANK]})


def _text(limit: int, kind: Kind = Kind.TEXT, **constraints: Any) -> Any:
    return Annotated[
        str | None, StringConstraints(max_length=limit, pattern=constraints.pop("pattern", anchored(TEXT_PATTERN))), kind
    ]


RecordId = Annotated[str, Field(strict=True), AfterValidator(_check_id), Kind.ID, WithJsonSchema(ID_SCHEMA)]
OptionalId = Annotated[
    RecordId | None, BeforeValidator(_blank_is_null(lambda value: value)), Field(default=None), Kind.REFERENCE,
    _typed(ID_SCHEMA),
]
Timestamp = Annotated[
    str | None, BeforeValidator(_blank_is_null(parse_time)), Kind.TIME,
    _typed({"type": "string", "pattern": anchored(TIME_PATTERN),
            "description": "ISO-8601 date-time; no offset means UTC. Served as YYYY-MM-DDTHH:MM:SS.mmmZ."}),
]
Day = Annotated[
    str | None, BeforeValidator(_blank_is_null(_parse_date)), Kind.DATE,
    _typed({"type": "string", "pattern": anchored(_DATE_RE.pattern),
            "description": "YYYY-MM-DD; of a date-time, the date part is kept."}),
]
#: Money may be negative (a credit note); a percentage is 0 to 100.
Money = Annotated[
    str | None,
    BeforeValidator(_blank_is_null(_decimal_parser(2, _MONEY_RE, "a decimal of at most 10 digits and 2 decimal places"))),
    Kind.MONEY,
    _typed({"type": "string", "pattern": anchored(MONEY_PATTERN), "description": "A decimal string; served with 2 places."}),
]
Percent = Annotated[
    str | None,
    BeforeValidator(_blank_is_null(_decimal_parser(3, _PERCENT_RE, "a decimal from 0 to 100 with at most 3 decimal places"))),
    Kind.PERCENT,
    _typed({"type": "string", "pattern": anchored(PERCENT_PATTERN), "description": "A decimal string; served with 3 places."}),
]
Version = Annotated[int | None, Field(default=None, strict=True, ge=0), BeforeValidator(_integral)]
Text20 = _text(20)
Text40 = _text(40)
Text50 = _text(50)
Text100 = _text(100)
Text200 = _text(200)
Text500 = _text(500)
Notes = _text(10_000, Kind.LONG_TEXT)
#: An email address holds one @ with no space or NUL on either side.
EMAIL_PATTERN: Final = rf"(?:[^@{SPACE}\x00]+@[^@{SPACE}\x00]+)?"
_EMAIL_RE = re.compile(EMAIL_PATTERN)


def _check_email(value: str | None) -> str | None:
    if value is not None and not _EMAIL_RE.fullmatch(value):
        raise ValueError("must be an e-mail address: one @, no spaces")
    return value


# The one pattern that needs a look-ahead: (?![\s\S]) ends the value in both Python's and
# JavaScript's expressions (Python's $ also matches before a final newline). The fast engine
# that checks the other text patterns has no look-ahead, so the address is checked by
# ``_check_email`` with the same pattern, and the document says it.
Email = Annotated[
    str | None, StringConstraints(max_length=254), AfterValidator(_check_email), Kind.TEXT,
    WithJsonSchema({"anyOf": [{"type": "string", "maxLength": 254, "pattern": f"^{EMAIL_PATTERN}(?![\\s\\S])"},
                              {"type": "null"}]}),
]

#: Numeric limits of the columns, so that the schema and validation agree.
MONEY_PRECISION: Final = (12, 2)
PERCENT_PRECISION: Final = (6, 3)


class _Record(BaseModel):
    """Fields shared by every entity, and the rules for all of them."""

    # The text patterns are checked by pydantic's own (Rust) engine: Python's, needed only for
    # look-arounds, made a bulk push a third slower (docs/BENCHMARKS.md).
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, strict=False)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        """NUL cannot be stored in PostgreSQL text, so no backend accepts it."""
        if isinstance(data, dict):
            for name, value in data.items():
                if isinstance(value, str) and "\x00" in value:
                    raise ValueError(f"{name} contains a NUL character")
        return data

    id: RecordId
    created_at: Timestamp = None
    updated_at: Timestamp = None
    deleted_at: Timestamp = None
    #: The server version the sender last saw; absent or null for a new record.
    base_version: Version = None
    #: The version a pulled record carried; accepted so a client can echo records back.
    version: Version = None


class Customer(_Record):
    name: Annotated[
        str, StringConstraints(min_length=1, max_length=200, pattern=anchored(TEXT_PATTERN)), Field(strict=True), Kind.TEXT
    ]
    company: Text200 = None
    email: Email = None
    phone: Text50 = None
    address: Text500 = None
    city: Text100 = None
    state: Text100 = None
    zip: Text20 = None
    country: Text100 = None
    notes: Notes = None


class Quote(_Record):
    quote_number: Text40 = None
    customer_id: OptionalId
    project_name: Text200 = None
    status: Text40 = None
    total_amount: Money = None
    discount_percent: Percent = None
    tax_percent: Percent = None
    notes: Notes = None
    valid_until: Day = None
    created_by: Text100 = None


class Order(_Record):
    order_number: Text40 = None
    quote_id: OptionalId
    customer_id: OptionalId
    status: Text40 = None
    order_date: Day = None
    delivery_date: Day = None
    total_amount: Money = None
    payment_status: Text40 = None
    notes: Notes = None


MODELS: Final[dict[str, type[_Record]]] = {"customers": Customer, "quotes": Quote, "orders": Order}

#: The field that holds each entity's human-facing unique number.
NUMBER_FIELDS: Final = {"quotes": "quote_number", "orders": "order_number"}
#: Prefix of the numbers the server hands out.
NUMBER_PREFIXES: Final = {"quotes": "Q-", "orders": "O-"}

#: References each entity holds, as field -> referenced entity.
REFERENCES: Final = {
    "customers": {},
    "quotes": {"customer_id": "customers"},
    "orders": {"customer_id": "customers", "quote_id": "quotes"},
}

_BOOKKEEPING = {"base_version", "version"}


@functools.cache
def data_fields(entity: str) -> tuple[str, ...]:
    """The stored fields of an entity, in schema order (no version bookkeeping)."""
    return tuple(name for name in MODELS[entity].model_fields if name not in _BOOKKEEPING)


def own_fields(entity: str) -> tuple[str, ...]:
    """The entity's own data fields, in schema order: those besides ``COMMON_FIELDS``."""
    return tuple(name for name in data_fields(entity) if name not in COMMON_FIELDS)


def field_kind(entity: str, name: str) -> Kind:
    """What a data field of an entity holds."""
    (kind,) = (item for item in MODELS[entity].model_fields[name].metadata if isinstance(item, Kind))
    return kind


def max_length(entity: str, name: str) -> int | None:
    """The most characters a text field may hold (None for other fields)."""
    lengths = [item.max_length for item in MODELS[entity].model_fields[name].metadata if hasattr(item, "max_length")]
    return next((length for length in lengths if length is not None), None)


@functools.cache
def required_fields(entity: str) -> tuple[str, ...]:
    """The fields every stored record holds a value in (``id`` aside): ``name`` of a customer."""
    model = MODELS[entity]
    return tuple(name for name, info in model.model_fields.items() if info.is_required() and name != "id")


@functools.cache
def _fields_model(entity: str) -> type[_Record]:
    """The entity's model with no required field but ``id``, for records that carry only
    some fields. A required field may be left out, never sent as null: its type still
    refuses null, and pydantic does not validate a default."""
    model = MODELS[entity]
    optional: dict[str, Any] = {
        name: (model.model_fields[name].annotation, FieldInfo.merge_field_infos(model.model_fields[name], default=None))
        for name in required_fields(entity)
    }
    return create_model(f"{model.__name__}Fields", __base__=model, **optional)


def format_number(entity: str, value: int) -> str:
    """The human-facing number for the value-th number of an entity: Q-000042."""
    return f"{NUMBER_PREFIXES[entity]}{value:06d}"


class InvalidRecord(ValueError):
    """Raised when a record does not fit its entity's schema; the message says why."""


def validate(entity: str, raw: Any) -> tuple[dict[str, Any], int | None]:
    """Check one whole record (a field left out is null); return its canonical data, every
    field of the entity, and its base_version. A tombstone may lack the required fields: a
    row another program deleted from the central database is served with its id and times."""
    if _tombstone(raw):
        model = _parse(_fields_model(entity), _without_empty_required(entity, raw))
        return {name: None for name in data_fields(entity)} | model.model_dump(
            include=model.model_fields_set - _BOOKKEEPING | {"id"}
        ), model.base_version
    model = _parse(MODELS[entity], raw)
    return model.model_dump(exclude=_BOOKKEEPING), model.base_version


def _tombstone(raw: Any) -> bool:
    return isinstance(raw, dict) and raw.get("deleted_at") is not None


def _without_empty_required(entity: str, raw: dict[str, Any]) -> dict[str, Any]:
    """A tombstone without the required fields it holds no value in (sent as null)."""
    return {name: value for name, value in raw.items() if value is not None or name not in required_fields(entity)}


def validate_fields(entity: str, raw: Any) -> tuple[dict[str, Any], int | None]:
    """Check the fields one pushed record carries; return only those (``id`` always), in
    canonical form, and its base_version.

    A field left out is not in the result, so that the server can keep what it stores;
    a field sent as null is there as None. Whether a required field is missing depends on
    whether the record is new, which only the server knows: see ``required_fields``.
    """
    if _tombstone(raw):  # a required field it sends as null is left out: the server keeps its own
        raw = _without_empty_required(entity, raw)
    model = _parse(_fields_model(entity), raw)
    sent = (model.model_fields_set - _BOOKKEEPING) | {"id"}
    return model.model_dump(include=sent), model.base_version


def _parse(model: type[_Record], raw: Any) -> _Record:
    if not isinstance(raw, dict):
        raise InvalidRecord("a record must be a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidRecord(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        field = ".".join(str(p) for p in error["loc"]) or "record"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "is not a field of this entity"
        parts.append(f"{field}: {message}")
    return "; ".join(parts)

