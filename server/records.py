"""The wire format of the three entities: validation and canonical values.

One pydantic model per entity says which fields a record may carry, of which type and
length. Validation is strict where the contract needs it to be: money and percentages are
decimal strings (a JSON float is refused, it is binary), ids are 32 lowercase hex digits,
times are ISO-8601 and come back in UTC with millisecond precision, and an unknown field
is an error, never silently dropped.

Both the server and the sync client use these models, so a record means the same thing on
either side of the wire.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

ENTITIES: Final = ("customers", "quotes", "orders")

#: Fields that every entity has besides its own.
COMMON_FIELDS: Final = ("id", "created_at", "updated_at", "deleted_at")

_ID_RE = re.compile(r"^[0-9a-f]{32}$")


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
    """An ISO-8601 date-time (naive means UTC) in canonical form; ValueError if it is none."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("must be an ISO-8601 date-time string")
    try:
        return canonical_time(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except (ValueError, OverflowError):
        raise ValueError("is not an ISO-8601 date-time (in range)") from None


def _parse_date(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("must be an ISO-8601 date string (YYYY-MM-DD)")
    try:
        if "T" in value or " " in value:  # a date-time: the time part must be valid too
            return datetime.fromisoformat(value.replace("Z", "+00:00")).date().isoformat()
        return date.fromisoformat(value).isoformat()
    except (ValueError, OverflowError):
        raise ValueError("is not an ISO-8601 date (YYYY-MM-DD)") from None


def _decimal_parser(places: int, maximum: Decimal, minimum: Decimal) -> Any:
    quantum = Decimal(1).scaleb(-places)

    def parse(value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError("must be a decimal string such as \"12.50\" (floats lose cents)")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError("is not a decimal number") from None
        if not number.is_finite():
            raise ValueError("is not a finite number")
        if not minimum <= number <= maximum:
            raise ValueError(f"must be from {minimum} to {maximum}")
        if number != number.quantize(quantum):
            raise ValueError(f"has more than {places} decimal places")
        return str(number.quantize(quantum))

    return parse


def _check_id(value: str) -> str:
    if not _ID_RE.fullmatch(value):
        raise ValueError("must be 32 lowercase hex digits (a UUID without dashes)")
    return value


RecordId = Annotated[str, Field(strict=True), AfterValidator(_check_id)]
OptionalId = Annotated[RecordId | None, Field(default=None)]
Timestamp = Annotated[str | None, BeforeValidator(parse_time)]
Day = Annotated[str | None, BeforeValidator(_parse_date)]
#: Money may be negative (a credit note); a percentage is 0 to 100.
Money = Annotated[str | None, BeforeValidator(_decimal_parser(2, Decimal("9999999999.99"), Decimal("-9999999999.99")))]
Percent = Annotated[str | None, BeforeValidator(_decimal_parser(3, Decimal("100"), Decimal("0")))]
Version = Annotated[int | None, Field(default=None, strict=True, ge=0)]
Text20 = Annotated[str | None, StringConstraints(max_length=20)]
Text40 = Annotated[str | None, StringConstraints(max_length=40)]
Text50 = Annotated[str | None, StringConstraints(max_length=50)]
Text100 = Annotated[str | None, StringConstraints(max_length=100)]
Text200 = Annotated[str | None, StringConstraints(max_length=200)]
Text500 = Annotated[str | None, StringConstraints(max_length=500)]
Notes = Annotated[str | None, StringConstraints(max_length=10_000)]
Email = Annotated[str | None, StringConstraints(max_length=254, pattern=r"^$|^[^@\s]+@[^@\s]+$")]

#: Numeric limits of the columns, so that the schema and validation agree.
MONEY_PRECISION: Final = (12, 2)
PERCENT_PRECISION: Final = (6, 3)


class _Record(BaseModel):
    """Fields shared by every entity, and the rules for all of them."""

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
    name: Annotated[str, StringConstraints(min_length=1, max_length=200), Field(strict=True)]
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


def format_number(entity: str, value: int) -> str:
    """The human-facing number for the value-th number of an entity: Q-000042."""
    return f"{NUMBER_PREFIXES[entity]}{value:06d}"


class InvalidRecord(ValueError):
    """Raised when a record does not fit its entity's schema; the message says why."""


def validate(entity: str, raw: Any) -> tuple[dict[str, Any], int | None]:
    """Check one incoming record; return its canonical data and its base_version."""
    if not isinstance(raw, dict):
        raise InvalidRecord("a record must be a JSON object")
    try:
        model = MODELS[entity].model_validate(raw)
    except ValidationError as exc:
        raise InvalidRecord(_describe(exc)) from None
    data = model.model_dump(exclude=_BOOKKEEPING)
    return data, model.base_version


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        field = ".".join(str(p) for p in error["loc"]) or "record"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "is not a field of this entity"
        parts.append(f"{field}: {message}")
    return "; ".join(parts)

