"""The central database's tables (SQLAlchemy Core).

Each entity table holds the original package's columns plus two of the server's own:
``version``, raised on every change of the record, and ``seq``, the entity's change
sequence. Every write takes the next ``seq`` values from ``counters`` while holding that
counter's row lock, so ``seq`` order is commit order: a reader paging by ``seq`` can never
step over a change that commits later with a smaller number.

Times are stored as canonical ISO-8601 UTC strings (see ``contract.records``), which sort
correctly as text on every backend; money is ``NUMERIC``. The migrations in
``server/migrations`` create exactly this; a test compares the two.
"""

from __future__ import annotations

from typing import Final

from decimal import Decimal
from typing import Any

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

from craftsync.contract.records import MONEY_PRECISION, PERCENT_PRECISION

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


customers = Table(
    "customers",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("company", String(200)),
    Column("email", String(254)),
    Column("phone", String(50)),
    Column("address", String(500)),
    Column("city", String(100)),
    Column("state", String(100)),
    Column("zip", String(20)),
    Column("country", String(100)),
    Column("notes", Text),
    *_bookkeeping("customers"),
)

quotes = Table(
    "quotes",
    metadata,
    Column("id", ID, primary_key=True),
    Column("quote_number", String(40), nullable=False),
    Column("customer_id", ID, ForeignKey("customers.id", name="fk_quotes_customer")),
    Column("project_name", String(200)),
    Column("status", String(40)),
    Column("total_amount", _money()),
    Column("discount_percent", _percent()),
    Column("tax_percent", _percent()),
    Column("notes", Text),
    Column("valid_until", DAY),
    Column("created_by", String(100)),
    *_bookkeeping("quotes"),
    Index("ix_quotes_quote_number", "quote_number"),
)

orders = Table(
    "orders",
    metadata,
    Column("id", ID, primary_key=True),
    Column("order_number", String(40), nullable=False),
    Column("quote_id", ID, ForeignKey("quotes.id", name="fk_orders_quote")),
    Column("customer_id", ID, ForeignKey("customers.id", name="fk_orders_customer")),
    Column("status", String(40)),
    Column("order_date", DAY),
    Column("delivery_date", DAY),
    Column("total_amount", _money()),
    Column("payment_status", String(40)),
    Column("notes", Text),
    *_bookkeeping("orders"),
    Index("ix_orders_order_number", "order_number"),
)

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
