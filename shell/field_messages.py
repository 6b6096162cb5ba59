"""Why a record was refused, in words a shop owner reads, one message per field.

The records API checks a record with the contract's models (``contract.records.MODELS``), so
the desktop refuses exactly what the server would. This module turns pydantic's structured
errors (their ``type``, ``loc``, ``input`` and ``ctx``) into short sentences such as "Enter a
date like 2026-12-31". It never reads pydantic's English messages: they speak of types and
regular expressions, and they change between versions.
"""

from __future__ import annotations

import typing
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from pydantic import ValidationError

from craftsync.contract import records
from craftsync.contract.records import MODELS, MONEY_PRECISION, PERCENT_PRECISION, REFERENCES

#: Field names whose label is not their name in words.
LABELS: Final = {"customer_id": "Customer", "quote_id": "Quote", "email": "E-mail", "zip": "ZIP code"}
#: The singular of each entity, for messages about references.
SINGULAR: Final = {"customers": "customer", "quotes": "quote", "orders": "order"}

NUL_MESSAGE: Final = "This text contains an invisible NUL character, which cannot be saved. Retype it."
DATE_MESSAGE: Final = "Enter a date like 2026-12-31"
TIME_MESSAGE: Final = "Enter a date and time like 2026-12-31T14:30:00Z"
EMAIL_MESSAGE: Final = "Enter an e-mail address like anna@example.com"
MONEY_MESSAGE: Final = "Enter an amount like 1250.00"


def label(name: str) -> str:
    """A field's name as the form shows it: "project_name" -> "Project name"."""
    if name in LABELS:
        return LABELS[name]
    text = name.replace("_", " ")
    return text[:1].upper() + text[1:]


def reference_message(entity: str, name: str) -> str:
    """What to say when a reference field names no record the user could have picked."""
    target = REFERENCES[entity].get(name, entity)
    return f"Choose a {SINGULAR[target]} from the list"


def summary(fields: dict[str, str]) -> str:
    """The one line shown with the fields' own messages."""
    return "Check the highlighted field." if len(fields) == 1 else "Check the highlighted fields."


def field_errors(entity: str, data: dict[str, Any]) -> dict[str, str]:
    """The problems of ``data`` as a record of ``entity``, as {field: message}; {} when none.

    A field with a NUL character is reported, and left out of the model check so that the
    model's record-wide NUL rule does not hide the other fields' problems.
    """
    errors = {name: NUL_MESSAGE for name, value in data.items() if isinstance(value, str) and "\x00" in value}
    checked = {name: (None if name in errors else value) for name, value in data.items()}
    try:
        MODELS[entity].model_validate(checked)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            name, message = describe(entity, error)
            errors.setdefault(name, message)
    return errors


def describe(entity: str, error: Any) -> tuple[str, str]:
    """(field, message) for one pydantic error; the field is "" when the error is record-wide."""
    loc = error.get("loc") or ()
    name = str(loc[0]) if loc else ""
    kind, value = error["type"], error.get("input")
    if not name:
        return "", "This record cannot be saved as it is."
    if name in REFERENCES[entity]:
        return name, reference_message(entity, name)
    if name == "id":
        return name, "This record's id is not valid."
    if kind == "extra_forbidden":
        return name, f"{label(name)} is not a field of this record."
    if _is_required(entity, name) and (kind == "missing" or value in (None, "")):
        return name, f"{label(name)} is required"
    return name, _value_message(entity, name, kind, value, error.get("ctx") or {})


def _value_message(entity: str, name: str, kind: str, value: Any, ctx: dict[str, Any]) -> str:
    field_kind = kind_of(entity, name)
    if field_kind == "money":
        return money_message(value)
    if field_kind == "percent":
        return f"Enter a percentage from 0 to 100 with at most {PERCENT_PRECISION[1]} decimals"
    if field_kind == "date":
        return DATE_MESSAGE
    if field_kind == "time":
        return TIME_MESSAGE
    if kind == "string_too_long":
        length = f" (this has {len(value):,})" if isinstance(value, str) else ""
        return f"At most {ctx.get('max_length', 0):,} characters{length}"
    if field_kind == "email":
        return EMAIL_MESSAGE
    if kind == "string_type":
        return f"{label(name)} must be text"
    return f"{label(name)} is not valid"


def money_message(value: Any) -> str:
    """Why ``value`` is not an amount: not a number, too many decimals, or too large."""
    places = MONEY_PRECISION[1]
    number = _decimal(value)
    if number is None:
        return MONEY_MESSAGE
    if number != number.quantize(Decimal(1).scaleb(-places)):
        return f"{MONEY_MESSAGE}, with at most {places} decimals"
    largest = Decimal(10) ** (MONEY_PRECISION[0] - places) - Decimal(1).scaleb(-places)
    return f"Enter an amount from -{largest} to {largest}"


def _decimal(value: Any) -> Decimal | None:
    """The finite number ``value`` writes, or None (a float is refused: it has no exact cents)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _is_required(entity: str, name: str) -> bool:
    field = MODELS[entity].model_fields.get(name)
    return field is not None and field.is_required()


#: The annotated types of ``contract.records`` whose validators mark a field's kind.
_KIND_TYPES: Final = {
    "money": records.Money,
    "percent": records.Percent,
    "date": records.Day,
    "time": records.Timestamp,
    "email": records.Email,
}


def kind_of(entity: str, name: str) -> str:
    """"money", "percent", "date", "time", "email" or "text": which of the contract's types
    the field was declared with (its validators are the type's own objects)."""
    field = MODELS[entity].model_fields.get(name)
    if field is not None:
        for kind, annotated in _KIND_TYPES.items():
            markers = typing.get_args(annotated)[1:]
            if markers and all(marker in field.metadata for marker in markers):
                return kind
    return "text"
