"""The three-way merge of one record (worker/merge.py), on plain dicts."""

from __future__ import annotations

from craftsync.worker.merge import merge

FIELDS = ("id", "name", "phone", "city", "updated_at", "deleted_at")
BASE = {"id": "r", "name": "Ann", "phone": None, "city": None, "updated_at": "2026-01-01T00:00:00.000Z", "deleted_at": None}


def test_different_fields_merge_and_the_later_updated_at_wins() -> None:
    local = {**BASE, "phone": "1", "updated_at": "2026-01-02T00:00:00.000Z"}
    remote = {**BASE, "city": "Oslo", "updated_at": "2026-01-03T00:00:00.000Z"}
    outcome = merge(BASE, local, remote, FIELDS, "manual")
    assert outcome.conflicts == []
    assert (outcome.record["phone"], outcome.record["city"]) == ("1", "Oslo")
    assert outcome.record["updated_at"] == "2026-01-03T00:00:00.000Z"


def test_the_same_field_changed_differently_is_settled_by_the_policy() -> None:
    local, remote = {**BASE, "name": "A"}, {**BASE, "name": "B"}
    assert merge(BASE, local, remote, FIELDS, "remote").record["name"] == "B"
    assert merge(BASE, local, remote, FIELDS, "local").record["name"] == "A"
    manual = merge(BASE, local, remote, FIELDS, "manual")
    assert manual.conflicts == ["name"] and manual.record == local


def test_deleted_on_both_sides_is_agreement_whatever_else_differs() -> None:
    local = {**BASE, "name": "A", "deleted_at": "2026-01-02T00:00:00.000Z"}
    remote = {**BASE, "name": "B", "deleted_at": "2026-01-03T00:00:00.000Z"}
    assert merge(BASE, local, remote, FIELDS, "manual").conflicts == []


def test_an_edit_against_a_delete_is_a_conflict_settled_whole() -> None:
    local = {**BASE, "phone": "1"}
    remote = {**BASE, "deleted_at": "2026-01-03T00:00:00.000Z"}
    assert merge(BASE, local, remote, FIELDS, "manual").conflicts == ["deleted_at", "phone"]
    assert merge(BASE, local, remote, FIELDS, "remote").record == remote
    assert merge(BASE, local, remote, FIELDS, "local").record == local
