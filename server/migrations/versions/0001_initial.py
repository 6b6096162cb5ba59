"""Entity tables, change counters and number blocks.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from craftsync.server.schema import ExactDecimal

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(32)
TIME = sa.String(24)
DAY = sa.String(10)


def _money() -> ExactDecimal:
    return ExactDecimal(12, 2)


def _percent() -> ExactDecimal:
    return ExactDecimal(6, 3)


def _bookkeeping() -> list[sa.Column]:
    return [
        sa.Column("created_at", TIME),
        sa.Column("updated_at", TIME),
        sa.Column("deleted_at", TIME),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("changed_at", TIME, nullable=False),
    ]


def _indexes(entity: str) -> None:
    op.create_index(f"ix_{entity}_seq", entity, ["seq"], unique=True)
    op.create_index(f"ix_{entity}_changed_at", entity, ["changed_at"])


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("company", sa.String(200)),
        sa.Column("email", sa.String(254)),
        sa.Column("phone", sa.String(50)),
        sa.Column("address", sa.String(500)),
        sa.Column("city", sa.String(100)),
        sa.Column("state", sa.String(100)),
        sa.Column("zip", sa.String(20)),
        sa.Column("country", sa.String(100)),
        sa.Column("notes", sa.Text),
        *_bookkeeping(),
    )
    _indexes("customers")
    op.create_table(
        "quotes",
        sa.Column("id", ID, primary_key=True),
        sa.Column("quote_number", sa.String(40), nullable=False),
        sa.Column("customer_id", ID, sa.ForeignKey("customers.id", name="fk_quotes_customer")),
        sa.Column("project_name", sa.String(200)),
        sa.Column("status", sa.String(40)),
        sa.Column("total_amount", _money()),
        sa.Column("discount_percent", _percent()),
        sa.Column("tax_percent", _percent()),
        sa.Column("notes", sa.Text),
        sa.Column("valid_until", DAY),
        sa.Column("created_by", sa.String(100)),
        *_bookkeeping(),
    )
    _indexes("quotes")
    op.create_index("ix_quotes_quote_number", "quotes", ["quote_number"])
    op.create_table(
        "orders",
        sa.Column("id", ID, primary_key=True),
        sa.Column("order_number", sa.String(40), nullable=False),
        sa.Column("quote_id", ID, sa.ForeignKey("quotes.id", name="fk_orders_quote")),
        sa.Column("customer_id", ID, sa.ForeignKey("customers.id", name="fk_orders_customer")),
        sa.Column("status", sa.String(40)),
        sa.Column("order_date", DAY),
        sa.Column("delivery_date", DAY),
        sa.Column("total_amount", _money()),
        sa.Column("payment_status", sa.String(40)),
        sa.Column("notes", sa.Text),
        *_bookkeeping(),
    )
    _indexes("orders")
    op.create_index("ix_orders_order_number", "orders", ["order_number"])
    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(
        counters,
        [{"name": name, "value": 0} for name in ("customers", "quotes", "orders", "quotes.number", "orders.number")],
    )
    op.create_table(
        "number_blocks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("entity", sa.String(20), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("first", sa.BigInteger, nullable=False),
        sa.Column("last", sa.BigInteger, nullable=False),
        sa.Column("issued_at", TIME, nullable=False),
    )


def downgrade() -> None:
    for table in ("number_blocks", "counters", "orders", "quotes", "customers"):
        op.drop_table(table)
