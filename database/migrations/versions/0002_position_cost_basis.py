"""Positions keep their exact cost basis.

`avg_price` is a quotient and must be rounded; a ledger that reconciles to the unit
needs the cost of the held quantity itself, changed only by exact amounts (a buy adds
its notional, a sell removes its share, and any rounding of that share lands in the
realized PnL of the same fill). Existing rows get quantity * avg_price.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from database.orm.types import Money

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("positions") as batch:
        batch.add_column(sa.Column("cost_basis", Money(), nullable=False, server_default="0"))
        batch.create_check_constraint("cost_basis_non_negative", "CAST(cost_basis AS NUMERIC) >= 0")
    op.execute("UPDATE positions SET cost_basis = quantity * avg_price")


def downgrade() -> None:
    with op.batch_alter_table("positions") as batch:
        batch.drop_constraint(op.f("ck_positions_cost_basis_non_negative"), type_="check")
        batch.drop_column("cost_basis")
