"""The central database's tables (SQLAlchemy Core).

Each entity table holds the contract's fields (``contract.records``: names, order, kinds
and lengths come from its models) plus two of the server's own:
``version``, raised on every change of the record, and ``seq``, the entity's change
sequence. Every write takes the next ``seq`` values from ``counters`` while holding that
counter's row lock, so ``seq`` order is commit order: a reader paging by ``seq`` can never
step over a change that commits later with a smaller number.

Times are stored as canonical ISO-8601 UTC strings (see ``contract.records``), which sort
correctly as text on every backend; money is ``NUMERIC``. The migrations in
``server/migrations`` create exactly this; a test compares the two.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect

from craftsync.contract.records import (
    MONEY_PRECISION,
    NUMBER_FIELDS,
    PERCENT_PRECISION,
    REFERENCES,
    Kind,
    field_kind,
    max_length,
    own_fields,
    required_fields,
)

metadata = MetaData()

ID = String(32)
TIME = String(24)
DAY = String(10)


class ExactDecimal(TypeDecorator[str]):
    """A decimal kept exact end to end: NUMERIC where the backend has it, text on SQLite.

    Values go in and come out as canonical decimal strings ("12.50"), never floats.
    """

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__(precision, scale, asdecimal=True)
        self.scale = scale

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":  # SQLite's NUMERIC is a float
            return dialect.type_descriptor(String(self.impl.precision + 2))
        return dialect.type_descriptor(self.impl)

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return str(value) if dialect.name == "sqlite" else Decimal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return str(Decimal(value).quantize(Decimal(1).scaleb(-self.scale)))


def _money() -> ExactDecimal:
    return ExactDecimal(*MONEY_PRECISION)


def _percent() -> ExactDecimal:
    return ExactDecimal(*PERCENT_PRECISION)


def _bookkeeping(entity: str) -> list[Column | Index]:
    """Columns and indexes every entity table has for versioning and change order."""
    return [
        Column("created_at", TIME),
        Column("updated_at", TIME),
        Column("deleted_at", TIME),
        Column("version", Integer, nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("changed_at", TIME, nullable=False),
        Index(f"ix_{entity}_seq", "seq", unique=True),
        Index(f"ix_{entity}_changed_at", "changed_at"),
    ]


def _column(entity: str, name: str) -> Column:
    """The column of one data field, from what the contract says the field holds.

    A required field (a customer's name) and the number of a quote or order, which the
    server always assigns, are NOT NULL; references get a foreign key."""
    kind = field_kind(entity, name)
    nullable = name not in required_fields(entity) and name != NUMBER_FIELDS.get(entity)
    if kind is Kind.REFERENCE:
        target = REFERENCES[entity][name]
        key = ForeignKey(f"{target}.id", name=f"fk_{entity}_{name.removesuffix('_id')}")
        return Column(name, ID, key, nullable=nullable)
    if kind is Kind.TEXT:
        return Column(name, String(max_length(entity, name)), nullable=nullable)
    return Column(name, _COLUMN_TYPES[kind](), nullable=nullable)


#: The column type of each kind of field but references and bounded texts.
_COLUMN_TYPES: Final[dict[Kind, Callable[[], Any]]] = {
    Kind.TIME: lambda: TIME,
    Kind.DATE: lambda: DAY,
    Kind.MONEY: _money,
    Kind.PERCENT: _percent,
    Kind.LONG_TEXT: Text,
}


def _entity_table(entity: str) -> Table:
    """An entity's table: its id, its own fields and its times as the contract lists them,
    then the server's bookkeeping; a quote's or order's number is indexed."""
    number = NUMBER_FIELDS.get(entity)
    return Table(
        entity,
        metadata,
        Column("id", ID, primary_key=True),
        *(_column(entity, name) for name in own_fields(entity)),
        *_bookkeeping(entity),
        *([Index(f"ix_{entity}_{number}", number)] if number else []),
    )


customers = _entity_table("customers")
quotes = _entity_table("quotes")
orders = _entity_table("orders")

#: Named counters: each entity's change sequence, and the numbers handed out for quotes
#: and orders ("quotes.number"). A row lock on a counter serialises its writers.
counters = Table(
    "counters",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

#: Every block of quote/order numbers handed to a device, so that an audit can tell who
#: owned a number.
number_blocks = Table(
    "number_blocks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entity", String(20), nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("first", BigInteger, nullable=False),
    Column("last", BigInteger, nullable=False),
    Column("issued_at", TIME, nullable=False),
)

TABLES: Final = {"customers": customers, "quotes": quotes, "orders": orders}
