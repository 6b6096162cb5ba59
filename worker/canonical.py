"""Local values in the server's canonical form, so that '12.5' and 12.50 compare equal.

The host app may write numbers into text columns; the server stores every value in one
spelling (contract.records). Comparing and merging works on that spelling.
"""

from __future__ import annotations

from typing import Any

from craftsync.contract.records import InvalidRecord, data_fields, validate


def as_text(value: Any) -> Any:
    """A value the host app wrote into a text column, as text: floats by their shortest repr
    (what the user typed), other numbers as digits."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    return str(value)


def canon(entity: str, data: dict[str, Any]) -> dict[str, Any]:
    """A record with canonical values.

    Values the host app wrote as numbers become text first. A record that does not
    validate keeps its values as they are; pushing it gets it quarantined with the reason.
    """
    plain = {name: as_text(data.get(name)) for name in data_fields(entity)}
    try:
        canonical, _ = validate(entity, plain)
    except InvalidRecord:
        return plain
    return canonical
