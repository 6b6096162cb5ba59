"""The central database's tables (SQLAlchemy Core), as CraftSync creates them.

Each entity table holds the contract's fields (``contract.records``: names, order, kinds
and lengths come from its models) and nothing else: what the server needs to version and
order changes lives beside it, in the entity's bookkeeping table (``craftsync_<entity>``,
see ``capture``), which triggers keep for every writer. A database a business already had
keeps its own tables instead (``mapping``); the bookkeeping, counters and number blocks are
the same for both.

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

from craftsync.server.capture import book_table, log_table
from craftsync.server.mapping import NATIVE
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


def _times() -> list[Column]:
    """The times every record carries."""
    return [Column("created_at", TIME), Column("updated_at", TIME), Column("deleted_at", TIME)]


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
    """An entity's table: its id, its own fields and its times as the contract lists them;
    a quote's or order's number is indexed."""
    number = NUMBER_FIELDS.get(entity)
    return Table(
        entity,
        metadata,
        Column("id", ID, primary_key=True),
        *(_column(entity, name) for name in own_fields(entity)),
        *_times(),
        *([Index(f"ix_{entity}_{number}", number)] if number else []),
    )


customers = _entity_table("customers")
quotes = _entity_table("quotes")
orders = _entity_table("orders")

#: Named counters: each entity's change sequence, and the numbers handed out for quotes
#: and orders ("quotes.number"). A row lock on a counter serialises its writers.
counters = Table(
    "craftsync_counters",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

#: Every block of quote/order numbers handed to a device, so that an audit can tell who
#: owned a number.
number_blocks = Table(
    "craftsync_number_blocks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entity", String(20), nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("first", BigInteger, nullable=False),
    Column("last", BigInteger, nullable=False),
    Column("issued_at", TIME, nullable=False),
)

TABLES: Final = {"customers": customers, "quotes": quotes, "orders": orders}
#: Each entity's bookkeeping table (``capture``).
BOOKS: Final = {entity: book_table(NATIVE[entity], metadata) for entity in TABLES}
#: Each entity's change log (``capture``).
LOGS: Final = {entity: log_table(NATIVE[entity], metadata) for entity in TABLES}
