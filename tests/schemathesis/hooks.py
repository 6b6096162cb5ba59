"""Schemathesis extension for the API run: one more check (loaded by ``SCHEMATHESIS_HOOKS``)."""

from __future__ import annotations

import json

import schemathesis

#: The refusals of a valid record that depend on what the server holds, by a phrase of their reason.
STATE_REASONS = ("Field required", "refers to no record of", "is already used by another record")


@schemathesis.check
def valid_record_refused_only_for_state(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """A single record generated to fit the document is refused only for the database's state."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    if case.method.upper() != "POST" or response.status_code != 422:
        return
    reason = str(json.loads(response.content).get("reason", ""))
    parts = reason.split("; ")
    if not all(any(phrase in part for phrase in STATE_REASONS) for part in parts):
        raise AssertionError(f"A record that fits the document was refused for its content: {reason}")
