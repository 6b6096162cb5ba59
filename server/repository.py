"""Reading and writing entity records: cursor pages, batch upserts, number blocks.

Records are read from the entity's bookkeeping table (id, version, feed position; see
``capture``) joined with its table, so that a row another program deleted is served as a
tombstone. Writes go to the entity's table only: its triggers log them, for the API's
writes exactly as for any other program's. Before the bookkeeping is read (a page, a
record, a batch), the log is folded into it, and before a page is read, the changes that
wait for a place in the feed are given one.

A push is one transaction per batch. It first locks the entity's change counter, which
serialises the API's writers of that entity (number uniqueness needs no further locking),
then the rows it is about to change, so that another program's write to one of them either
commits before the batch folds the log and reads it (and is seen: a stale ``base_version``
is a conflict) or waits until the batch has committed. Other programs' writes to other rows
never wait. The batch folds its own writes before it commits.

A pushed record may carry only some fields. A field it leaves out keeps the value the
server stores (for a new record: null, but ``created_at`` and ``updated_at``, which take
the server's time); a field sent as null is cleared. An update that leaves out
``updated_at`` and changes something gets the server's time there. A new record must
carry the required fields (a customer's ``name``); no record may clear them. Columns the
contract does not know are never written, but on insert, where the map gives their value.

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

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Select,
    bindparam,
    delete,
    func,
    insert,
    null,
    select,
    update,
)

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
from craftsync.server.capture import fold, has_pending, sequence
from craftsync.server.catalog import Catalog, EntityTables
from craftsync.server.schema import counters, number_blocks

#: Page size when a client names none, and the most it may ask for.
DEFAULT_LIMIT: Final = 500
MAX_LIMIT: Final = 5000
#: The most records one POST may carry.
MAX_BATCH: Final = 5000
#: The largest block of numbers one request may reserve.
MAX_NUMBER_BLOCK: Final = 10_000
#: Bound parameters per IN (...) list.
_CHUNK: Final = 1000


def settle(engine: Engine, catalog: Catalog, entity: str) -> int:
    """Fold the entity's committed writes into its bookkeeping and give its pending changes
    their places in the feed (``capture.fold``, ``capture.sequence``); returns how many
    changes were numbered. Cheap when nothing waits."""
    tables = catalog[entity]
    with engine.connect() as conn:
        if not has_pending(conn, tables.map):
            return 0
    with engine.connect().execution_options(write=True) as conn, conn.begin():
        _lock_counter(conn, entity)
        fold(conn, tables.map)
        return sequence(conn, tables.book, counters, entity)


def _lock_counter(conn: Connection, entity: str) -> None:
    """The entity counter's row lock: its holder alone folds, numbers and pushes."""
    conn.execute(select(counters.c.value).where(counters.c.name == entity).with_for_update()).scalar_one()


def pull(
    conn: Connection,
    catalog: Catalog,
    entity: str,
    *,
    since: int = 0,
    limit: int = DEFAULT_LIMIT,
    updated_since: str | None = None,
    count: bool = False,
) -> dict[str, Any]:
    """One page of changes after cursor ``since``, in change order (keyset pagination)."""
    book = catalog[entity].book
    where = [book.c.seq > since]
    if updated_since is not None:
        where.append(book.c.changed_at >= updated_since)
    query = record_query(catalog, entity).where(*where).order_by(book.c.seq).limit(limit + 1)
    rows = conn.execute(query).all()
    page = rows[:limit]
    answer: dict[str, Any] = {
        "records": [to_record(entity, row) for row in page],
        "next_cursor": str(page[-1].seq if page else since),
        "has_more": len(rows) > limit,
    }
    if count:
        answer["remaining"] = conn.execute(select(func.count()).select_from(book).where(*where)).scalar_one()
    return answer


def get(conn: Connection, catalog: Catalog, entity: str, record_id: str) -> dict[str, Any] | None:
    """One record by id, tombstones included."""
    row = conn.execute(record_query(catalog, entity).where(catalog[entity].record_id == record_id)).first()
    return to_record(entity, row) if row else None


def record_query(catalog: Catalog, entity: str) -> Select[Any]:
    """Every record of ``entity`` with what ``to_record`` needs: the bookkeeping row, joined
    with the table's row when there still is one; a reference to an entity keyed by integers
    is read back as the referenced record's id."""
    tables = catalog[entity]
    book = tables.book
    source = book.outerjoin(tables.rows, tables.key == book.c.row_key)
    columns: list[Any] = [
        book.c.id, book.c.version, book.c.seq, book.c.row_key,
        book.c.deleted_at.label("gone_at"), tables.key.label("present_key"),
    ]
    for name in data_fields(entity)[1:]:
        column = tables.column(name)
        target = REFERENCES[entity].get(name)
        if column is None:
            columns.append(null().label(name))
        elif target and not catalog[target].map.key_is_id:
            referenced = catalog[target].book.alias(f"ref_{name}")
            source = source.outerjoin(referenced, referenced.c.row_key == column)
            columns.append(referenced.c.id.label(name))
        else:
            columns.append(column.label(name))
    return select(*columns).select_from(source)


def to_record(entity: str, row: Row[Any]) -> dict[str, Any]:
    """A stored row as it goes on the wire: its data fields and its version. A record whose
    row is gone is a tombstone, deleted when its row was."""
    mapping = row._mapping
    record = {name: mapping[name] for name in data_fields(entity)}
    if mapping["present_key"] is None:
        record["deleted_at"] = record["deleted_at"] or mapping["gone_at"]
    record["version"] = mapping["version"]
    return record


def push(engine: Engine, catalog: Catalog, entity: str, raws: Sequence[Any]) -> list[dict[str, Any]]:
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
            batch = _Batch(conn, catalog, entity, [data for _, data, _ in valid])
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

    def __init__(self, conn: Connection, catalog: Catalog, entity: str, records: list[dict[str, Any]]) -> None:
        self.conn = conn
        self.catalog = catalog
        self.entity = entity
        self.tables: EntityTables = catalog[entity]
        self.fields = data_fields(entity)
        self.number_field = NUMBER_FIELDS.get(entity)
        self.soft_delete = self.tables.column("deleted_at") is not None
        # The lock on the change counter serialises the API's writers; take it first.
        _lock_counter(conn, entity)
        #: (field, column, referenced entity or None) of every field the table holds but the id.
        self.columns = [
            (name, column, REFERENCES[entity].get(name))
            for name in self.fields
            if name != "id" and (column := self.tables.map.column(name)) is not None
        ]
        #: id -> (the row's key, whether the row is there), for every stored record sent.
        self.keys: dict[str, tuple[Any, bool]] = {}
        self.current = self._load_current({r["id"] for r in records})
        self.references = self._load_references(records)
        self.numbers = self._load_live_numbers(records)
        self.inserts: dict[str, dict[str, Any]] = {}
        self.updates: dict[str, dict[str, Any]] = {}
        self.deletes: dict[str, str] = {}
        self.now = now_iso()

    def apply(self, sent: dict[str, Any], base: int | None) -> dict[str, Any]:
        """Decide the outcome of one record (its fields as sent) and stage its write."""
        current = self.current.get(sent["id"])
        data = self._whole_record(sent, current)
        missing = [name for name in required_fields(self.entity) if data[name] is None]
        if missing and not (current is not None and data["deleted_at"] is not None):
            # A new record without them (an update cannot clear them: its type refuses null),
            # or one brought back after another program deleted its row.
            reason = "; ".join(f"{name}: Field required" for name in missing)
            return {"id": sent["id"], "status": "rejected", "reason": reason}
        if current is not None and self._same_content(sent, data, current, base):
            return self._answer("unchanged", sent, current)
        if current is not None and base != current["version"]:
            return {"id": sent["id"], "status": "conflict", "version": current["version"], "record": current}
        if current is not None and data["deleted_at"] is not None and not self._present(sent["id"]):
            return self._answer("unchanged", sent, current)  # deleted here, its row already gone
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

    def _present(self, record_id: str) -> bool:
        return self.keys.get(record_id, (None, False))[1]

    def _whole_record(self, sent: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
        """Every field of the record a push describes: the fields sent, over what the server
        holds (an update) or over nulls and the server's time as both timestamps (a create)."""
        if current is not None:
            return {**{name: current[name] for name in self.fields}, **sent}
        blank: dict[str, Any] = dict.fromkeys(self.fields)
        blank["created_at"] = blank["updated_at"] = self.now
        return {**blank, **sent}

    def flush(self) -> None:
        """Write the staged rows (their triggers log them), then fold the log."""
        tables, conn = self.tables, self.conn
        key = tables.map.key
        if self.inserts:
            keyed = {rid: row for rid, row in self.inserts.items() if key in row}
            if keyed:
                conn.execute(insert(tables.rows), list(keyed.values()))
            unkeyed = [(rid, row) for rid, row in self.inserts.items() if key not in row]
            if unkeyed:  # the database numbers the rows; the bookkeeping takes the devices' ids
                made = conn.execute(
                    insert(tables.rows).returning(tables.key, sort_by_parameter_order=True),
                    [row for _, row in unkeyed],
                ).scalars().all()
                conn.execute(  # version 0: the fold below counts the INSERT
                    insert(tables.book),
                    [{"row_key": made_key, "id": rid, "version": 0, "seq": None, "changed_at": self.now}
                     for (rid, _), made_key in zip(unkeyed, made)],
                )
        if self.updates:
            conn.execute(
                update(tables.rows).where(tables.key == bindparam("row_key_")),
                [{"row_key_": self.keys[rid][0], **row} for rid, row in self.updates.items()],
            )
        if self.deletes:
            keys = [self.keys[rid][0] for rid in self.deletes]
            for start in range(0, len(keys), _CHUNK):
                conn.execute(delete(tables.rows).where(tables.key.in_(keys[start : start + _CHUNK])))
            conn.execute(
                update(tables.book).where(tables.record_id == bindparam("gone_id")).values(
                    deleted_at=bindparam("gone_at")
                ),
                [{"gone_id": rid, "gone_at": when} for rid, when in self.deletes.items()],
            )
        fold(conn, tables.map)

    def _stage(
        self, sent: dict[str, Any], data: dict[str, Any], current: dict[str, Any] | None, note: str | None
    ) -> dict[str, Any]:
        record_id = data["id"]
        version = current["version"] + 1 if current else 1  # the triggers raise it by one per write
        if data["deleted_at"] is not None and not self.soft_delete:
            self.deletes[record_id] = data["deleted_at"]  # no column to mark it: the row goes
        elif record_id in self.inserts or not self._present(record_id):
            self.inserts[record_id] = self._row(data, new=record_id not in self.keys)
        else:
            self.updates[record_id] = self._row(data)
        stored = {**data, "version": version}
        self.current[record_id] = stored
        status = "created" if current is None else "updated"
        answer = self._answer(status, sent, stored)
        if note:
            answer["reason"] = note
        return answer

    def _row(self, data: dict[str, Any], *, new: bool = False) -> dict[str, Any]:
        """The columns to write for a record: the mapped fields (a reference as the referenced
        row's key), and for a new row the values the map gives for the table's other columns.
        The key goes too, but for a new row of a table whose database assigns keys."""
        tables = self.tables
        row: dict[str, Any] = {}
        for name, column, target in self.columns:
            value = data[name]
            if target and value is not None:
                value = self.references[target][value]
            row[column] = value
        if tables.map.key_is_id:
            row[tables.map.key] = data["id"]
        elif not new:
            row[tables.map.key] = self.keys[data["id"]][0]
        if new or not self._present(data["id"]):
            row.update({name: value for name, value in tables.map.defaults.items() if name not in row})
        return row

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
        """A reference the record sends that names no record with a row. One it leaves out
        is the stored one, which the foreign key keeps valid."""
        for field, target in REFERENCES[self.entity].items():
            value = sent.get(field)
            if value is not None and value not in self.references[target]:
                if self._row_deleted(target, value):  # no push can bring it: the sender must choose another
                    return f"{field}: refers to a record of {target} whose row was deleted from the server's database"
                return f"{field}: refers to no record of {target} (push {target} first)"
        return None

    def _row_deleted(self, target: str, record_id: str) -> bool:
        """Whether the server knows the record only as a tombstone whose row is gone (another
        program's DELETE, or a delete on a table without ``deleted_at``)."""
        tables = self.catalog[target]
        return self.conn.execute(select(tables.book.c.id).where(tables.record_id == record_id)).first() is not None

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
        """The counter's next number that no live record holds: clients and other programs
        may choose numbers of the counter's own form (Q-000001) it has not handed out."""
        while True:
            number = format_number(self.entity, _advance(self.conn, f"{self.entity}.number", 1))
            if number not in self.numbers and not self._held_by_live_record(number):
                return number

    def _live(self, query: Select[Any]) -> Select[Any]:
        deleted = self.tables.column("deleted_at")
        return query if deleted is None else query.where(deleted.is_(None))

    def _held_by_live_record(self, number: str) -> bool:
        """Whether a live row in the database holds ``number`` (one bound parameter)."""
        column = self.tables.column(self.number_field or "")
        assert column is not None
        query = self._live(select(self.tables.key).where(column == number).limit(1))
        return self.conn.execute(query).first() is not None

    def _load_current(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored records of ``ids``, as they stand once their rows are locked: another
        program's write to one of them has either committed before (and is folded in), or
        waits for this batch. Rows that are not there yet are not locked: a batch made only of
        new records reads once."""
        tables, ids = self.tables, list(ids)
        query = record_query(self.catalog, self.entity)
        fold(self.conn, tables.map)  # every write that committed so far
        rows = _select_in(self.conn, query, tables.record_id, ids)
        present = sorted(row.row_key for row in rows if row.present_key is not None)
        if present and self.conn.dialect.name != "sqlite":  # SQLite: the batch holds the file's write lock
            _select_in(self.conn, select(tables.key).with_for_update(of=tables.rows), tables.key, present)
            if fold(self.conn, tables.map):  # a write that committed before its row was locked
                rows = _select_in(self.conn, query, tables.record_id, ids)
        self.keys = {row.id: (row.row_key, row.present_key is not None) for row in rows}
        return {row.id: to_record(self.entity, row) for row in rows}

    def _load_references(self, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The key of each record referenced, by the batch or by what it updates, whose row
        exists (tombstones that keep their row included: the foreign keys hold for them too),
        by id."""
        found: dict[str, dict[str, Any]] = {}
        for field, target in REFERENCES[self.entity].items():
            wanted = {r[field] for r in [*records, *self.current.values()] if r.get(field) is not None}
            tables = self.catalog[target]
            query = select(tables.book.c.id, tables.key).select_from(
                tables.book.join(tables.rows, tables.key == tables.book.c.row_key)
            )
            rows = _select_in(self.conn, query, tables.record_id, wanted)
            found.setdefault(target, {}).update({row[0]: row[1] for row in rows})
        return found

    def _load_live_numbers(self, records: list[dict[str, Any]]) -> dict[str, str]:
        """Which live record holds each number the batch may keep: the numbers sent, and the
        stored ones (a restored record that sends no number keeps its own, unless a live
        record took it while it was deleted)."""
        if not self.number_field:
            return {}
        field, tables = self.number_field, self.tables
        column = tables.column(field)
        assert column is not None
        wanted = {r[field] for r in records if r.get(field)} | {c[field] for c in self.current.values() if c[field]}
        query = self._live(
            select(tables.book.c.id, column).select_from(
                tables.rows.join(tables.book, tables.book.c.row_key == tables.key)
            )
        )
        return {row[1]: row[0] for row in _select_in(self.conn, query, column, wanted)}


def _select_in(conn: Connection, query: Select[Any], column: Any, values: Iterable[Any]) -> list[Row[Any]]:
    """The rows of ``query`` whose ``column`` is one of ``values``, in chunks of bound parameters."""
    values = list(values)
    rows: list[Row[Any]] = []
    for start in range(0, len(values), _CHUNK):
        rows.extend(conn.execute(query.where(column.in_(values[start : start + _CHUNK]))).all())
    return rows
