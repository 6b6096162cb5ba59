"""Reading and writing entity records: cursor pages, batch upserts, number blocks.

A push is one transaction per batch. It first locks the entity's change counter, which
serialises writers of that entity, so that version checks, number uniqueness and the
change sequence need no further locking and ``seq`` order is commit order.

A pushed record may carry only some fields. A field it leaves out keeps the value the
server stores (for a new record: null, but ``created_at`` and ``updated_at``, which take
the server's time); a field sent as null is cleared. An update that leaves out
``updated_at`` and changes something gets the server's time there. A new record must
carry the required fields (a customer's ``name``); no record may clear them.

For each record of a batch the outcome is:

- ``created``: a new id; its number is kept, or assigned when absent, or replaced by a
  fresh one (and reported) when another live record already holds it;
- ``unchanged``: the server already holds exactly this content in the fields sent,
  whatever ``base_version`` says (a retried batch, or both sides made the same change);
- ``updated``: ``base_version`` is the current version, so the sender saw the latest;
- ``conflict``: ``base_version`` is stale and the content differs; nothing is written and
  the server's record comes back;
- ``rejected``: invalid, a required field missing from a new record, a dangling
  reference, or a number taken by another record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from sqlalchemy import Connection, Engine, Row, Table, bindparam, func, insert, select, update

from craftsync.contract.records import (
    NUMBER_FIELDS,
    REFERENCES,
    InvalidRecord,
    data_fields,
    format_number,
    now_iso,
    required_fields,
    validate_fields,
)
from craftsync.server.schema import TABLES, counters, number_blocks

#: Page size when a client names none, and the most it may ask for.
DEFAULT_LIMIT: Final = 500
MAX_LIMIT: Final = 5000
#: The most records one POST may carry.
MAX_BATCH: Final = 5000
#: The largest block of numbers one request may reserve.
MAX_NUMBER_BLOCK: Final = 10_000


def pull(
    conn: Connection,
    entity: str,
    *,
    since: int = 0,
    limit: int = DEFAULT_LIMIT,
    updated_since: str | None = None,
    count: bool = False,
) -> dict[str, Any]:
    """One page of changes after cursor ``since``, in change order (keyset pagination)."""
    table = TABLES[entity]
    where = [table.c.seq > since]
    if updated_since is not None:
        where.append(table.c.changed_at >= updated_since)
    rows = conn.execute(select(table).where(*where).order_by(table.c.seq).limit(limit + 1)).all()
    page = rows[:limit]
    answer: dict[str, Any] = {
        "records": [to_record(entity, row) for row in page],
        "next_cursor": str(page[-1].seq if page else since),
        "has_more": len(rows) > limit,
    }
    if count:
        answer["remaining"] = conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
    return answer


def get(conn: Connection, entity: str, record_id: str) -> dict[str, Any] | None:
    """One record by id, tombstones included."""
    table = TABLES[entity]
    row = conn.execute(select(table).where(table.c.id == record_id)).first()
    return to_record(entity, row) if row else None


def to_record(entity: str, row: Row[Any]) -> dict[str, Any]:
    """A stored row as it goes on the wire: its data fields and its version."""
    mapping = row._mapping
    record = {name: mapping[name] for name in data_fields(entity)}
    record["version"] = mapping["version"]
    return record


def push(engine: Engine, entity: str, raws: Sequence[Any]) -> list[dict[str, Any]]:
    """Apply a batch of records in one transaction; one result per record, in order."""
    results: list[dict[str, Any] | None] = [None] * len(raws)
    valid: list[tuple[int, dict[str, Any], int | None]] = []
    for index, raw in enumerate(raws):
        try:
            data, base = validate_fields(entity, raw)
        except InvalidRecord as exc:
            results[index] = _result(raw, "rejected", reason=str(exc))
            continue
        valid.append((index, data, base))
    if valid:
        with engine.connect().execution_options(write=True) as conn, conn.begin():
            batch = _Batch(conn, entity, [data for _, data, _ in valid])
            for index, data, base in valid:
                results[index] = batch.apply(data, base)
            batch.flush()
    return [result for result in results if result is not None]


def issue_number_block(engine: Engine, entity: str, device_id: str, size: int) -> dict[str, Any]:
    """Reserve ``size`` consecutive numbers of ``entity`` for one device."""
    with engine.connect().execution_options(write=True) as conn, conn.begin():
        last = _advance(conn, f"{entity}.number", size)
        first = last - size + 1
        conn.execute(
            insert(number_blocks).values(
                entity=entity, device_id=device_id, first=first, last=last, issued_at=now_iso()
            )
        )
    return {
        "entity": entity,
        "first": first,
        "last": last,
        "first_number": format_number(entity, first),
        "last_number": format_number(entity, last),
    }


def _advance(conn: Connection, name: str, step: int) -> int:
    """Add ``step`` to a counter under its row lock; return the new value."""
    value = conn.execute(
        select(counters.c.value).where(counters.c.name == name).with_for_update()
    ).scalar_one()
    conn.execute(update(counters).where(counters.c.name == name).values(value=value + step))
    return int(value) + step


def _result(raw: Any, status: str, **extra: Any) -> dict[str, Any]:
    record_id = raw.get("id") if isinstance(raw, dict) else None
    return {"id": record_id if isinstance(record_id, str) else None, "status": status, **extra}


class _Batch:
    """The state of one batch upsert: what the database holds, and what to write."""

    def __init__(self, conn: Connection, entity: str, records: list[dict[str, Any]]) -> None:
        self.conn = conn
        self.entity = entity
        self.table: Table = TABLES[entity]
        self.fields = data_fields(entity)
        self.number_field = NUMBER_FIELDS.get(entity)
        # The lock on the change counter is what serialises writers; take it first.
        self.seq = conn.execute(
            select(counters.c.value).where(counters.c.name == entity).with_for_update()
        ).scalar_one()
        self.start_seq = self.seq
        self.current = self._load_current({r["id"] for r in records})
        self.existing_refs = self._load_references(records)
        self.numbers = self._load_live_numbers(records)
        self.inserts: dict[str, dict[str, Any]] = {}
        self.updates: dict[str, dict[str, Any]] = {}
        self.now = now_iso()

    def apply(self, sent: dict[str, Any], base: int | None) -> dict[str, Any]:
        """Decide the outcome of one record (its fields as sent) and stage its write."""
        current = self.current.get(sent["id"])
        data = self._whole_record(sent, current)
        missing = [name for name in required_fields(self.entity) if data[name] is None]
        if missing:  # a new record without them (an update cannot clear them: its type refuses null)
            reason = "; ".join(f"{name}: Field required" for name in missing)
            return {"id": sent["id"], "status": "rejected", "reason": reason}
        if current is not None and self._same_content(sent, data, current, base):
            return self._answer("unchanged", sent, current)
        if current is not None and base != current["version"]:
            return {"id": sent["id"], "status": "conflict", "version": current["version"], "record": current}
        reason = self._dangling_reference(sent)
        if reason:
            return {"id": sent["id"], "status": "rejected", "reason": reason}
        if current is not None and "updated_at" not in sent:
            data["updated_at"] = self.now  # the record changes now; the sender did not say when
        note = None
        if self.number_field and data["deleted_at"] is None:
            number, note = self._settle_number(data, current)
            if number is None:
                return {"id": sent["id"], "status": "rejected", "reason": note}
            data = {**data, self.number_field: number}
        elif self.number_field:
            data = self._tombstone_number(data, current)
        return self._stage(sent, data, current, note)

    def _whole_record(self, sent: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
        """Every field of the record a push describes: the fields sent, over what the server
        holds (an update) or over nulls and the server's time as both timestamps (a create)."""
        if current is not None:
            return {**{name: current[name] for name in self.fields}, **sent}
        blank: dict[str, Any] = dict.fromkeys(self.fields)
        blank["created_at"] = blank["updated_at"] = self.now
        return {**blank, **sent}

    def flush(self) -> None:
        """Write the staged rows and move the change counter past them."""
        if self.inserts:
            self.conn.execute(insert(self.table), list(self.inserts.values()))
        if self.updates:
            self.conn.execute(
                update(self.table).where(self.table.c.id == bindparam("key")),
                [{"key": key, **row} for key, row in self.updates.items()],
            )
        if self.seq != self.start_seq:
            self.conn.execute(update(counters).where(counters.c.name == self.entity).values(value=self.seq))

    def _stage(
        self, sent: dict[str, Any], data: dict[str, Any], current: dict[str, Any] | None, note: str | None
    ) -> dict[str, Any]:
        self.seq += 1
        version = current["version"] + 1 if current else 1
        row = {**data, "version": version, "seq": self.seq, "changed_at": self.now}
        target = self.inserts if current is None or data["id"] in self.inserts else self.updates
        target[data["id"]] = row
        stored = {**data, "version": version}
        self.current[data["id"]] = stored
        status = "created" if current is None else "updated"
        answer = self._answer(status, sent, stored)
        if note:
            answer["reason"] = note
        return answer

    def _answer(self, status: str, sent: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = {"id": stored["id"], "status": status, "version": stored["version"]}
        # The sender must adopt what the server changed (a number, a canonical value) and
        # learn the fields it did not send.
        if any(name not in sent or sent[name] != stored[name] for name in self.fields):
            answer["record"] = stored
        return answer

    def _same_content(
        self, sent: dict[str, Any], data: dict[str, Any], current: dict[str, Any], base: int | None
    ) -> bool:
        # A create re-sent after the server numbered it carries no number, or its old one.
        skip = self.number_field if base is None or sent.get(self.number_field or "") is None else None
        return all(data[name] == current[name] for name in self.fields if name != skip)

    def _dangling_reference(self, sent: dict[str, Any]) -> str | None:
        """A reference the record sends that names no record. One it leaves out is the
        stored one, which the foreign key keeps valid."""
        for field, target in REFERENCES[self.entity].items():
            value = sent.get(field)
            if value is not None and value not in self.existing_refs[target]:
                return f"{field}: refers to no record of {target} (push {target} first)"
        return None

    def _settle_number(self, data: dict[str, Any], current: dict[str, Any] | None) -> tuple[str | None, str | None]:
        """The number a live record will hold, and a note when it is not the one sent."""
        field = self.number_field
        assert field is not None
        wanted = data[field] or (current[field] if current else None)
        holder = self.numbers.get(wanted) if wanted else None
        old = current[field] if current and current["deleted_at"] is None else None
        if wanted and holder in (None, data["id"]):
            number, note = wanted, None
        elif current is None or current["deleted_at"] is not None:
            number = self._next_number()
            note = f"{field} {wanted} is held by another record; renumbered to {number}" if wanted else None
        else:
            return None, f"{field}: {wanted} is already used by another record"
        if old and old != number:
            self.numbers.pop(old, None)
        self.numbers[number] = data["id"]
        return number, note

    def _tombstone_number(self, data: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
        """A deleted record keeps a number but frees it for live records."""
        field = self.number_field
        assert field is not None
        number = data[field] or (current[field] if current else None) or self._next_number()
        if current and self.numbers.get(current[field]) == data["id"]:
            del self.numbers[current[field]]
        return {**data, field: number}

    def _next_number(self) -> str:
        """The counter's next number that no live record holds: clients may choose numbers of
        the counter's own form (Q-000001), which the counter has not handed out."""
        while True:
            number = format_number(self.entity, _advance(self.conn, f"{self.entity}.number", 1))
            if number not in self.numbers and not self._held_by_live_record(number):
                return number

    def _held_by_live_record(self, number: str) -> bool:
        """Whether a live record in the database holds ``number`` (one bound parameter)."""
        column = self.table.c[self.number_field or ""]
        query = select(self.table.c.id).where(column == number, self.table.c.deleted_at.is_(None)).limit(1)
        return self.conn.execute(query).first() is not None

    def _load_current(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        rows = _select_in(self.conn, self.table, self.table.c.id, ids)
        return {row.id: to_record(self.entity, row) for row in rows}

    def _load_references(self, records: list[dict[str, Any]]) -> dict[str, set[str]]:
        """Which referenced ids exist (tombstones included: the foreign keys hold for them too)."""
        found: dict[str, set[str]] = {}
        for field, target in REFERENCES[self.entity].items():
            wanted = {r[field] for r in records if r.get(field) is not None}
            table = TABLES[target]
            found[target] = {row.id for row in _select_in(self.conn, table, table.c.id, wanted, table.c.id)}
        return found

    def _load_live_numbers(self, records: list[dict[str, Any]]) -> dict[str, str]:
        """Which live record holds each number the batch may keep: the numbers sent, and the
        stored ones (a restored record that sends no number keeps its own, unless a live
        record took it while it was deleted)."""
        if not self.number_field:
            return {}
        field = self.number_field
        column = self.table.c[field]
        wanted = {r[field] for r in records if r.get(field)} | {c[field] for c in self.current.values() if c[field]}
        rows = _select_in(self.conn, self.table, column, wanted, self.table.c.id, column, live_only=True)
        return {row[1]: row[0] for row in rows}


def _select_in(
    conn: Connection, table: Table, column: Any, values: Iterable[Any], *columns: Any, live_only: bool = False
) -> list[Row[Any]]:
    """Rows whose ``column`` is one of ``values``, fetched in chunks of bound parameters."""
    values = list(values)
    rows: list[Row[Any]] = []
    for start in range(0, len(values), 1000):
        query = select(*(columns or (table,))).where(column.in_(values[start : start + 1000]))
        if live_only:
            query = query.where(table.c.deleted_at.is_(None))
        rows.extend(conn.execute(query).all())
    return rows
