"""Orders learn DAY/GTD expiry, post-only, a stop trigger, cash-amount buys and
replacement links; an account's fee rates become an optional override.

- `orders.time_in_force` admits DAY and GTD; a GTD order carries `expires_at` (a DAY
  order gets the end of its UTC day there too).
- `orders.stop_trigger`: which price triggers a stop (last, bid or ask).
- `orders.post_only`: a limit refused rather than taking liquidity.
- `orders.notional`: the cash amount a notional market buy asked for.
- `orders.replaces_order_id`: the order a PATCH replaced by this one.
- `positions.entry_fees`: the buy fees of the held quantity, so a sale's win or loss is
  net of both its fees (existing positions start at 0: their buy fees were not kept).
- `trading_accounts.maker_fee_bps` / `taker_fee_bps` become nullable: NULL trades at
  each pair's own schedule. Every existing value was a copy of the PAPER_* defaults
  made when the account was created (no endpoint set them), so they become NULL: the
  pairs' schedules apply from now on, as the defect "per-pair fees are ignored" asks.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from database.orm.types import Money, UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_OLD_TIF = "time_in_force IN ('GTC', 'IOC', 'FOK')"
_NEW_TIF = "time_in_force IN ('GTC', 'IOC', 'FOK', 'DAY', 'GTD')"


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(
            sa.Column("stop_trigger", sa.String(4), nullable=False, server_default="last")
        )
        batch.add_column(
            sa.Column("post_only", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("expires_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("notional", Money(), nullable=True))
        batch.add_column(sa.Column("replaces_order_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_orders_replaces_order_id_orders"),
            "orders",
            ["replaces_order_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(op.f("ix_orders_replaces_order_id"), ["replaces_order_id"])
        batch.drop_constraint(op.f("ck_orders_time_in_force"), type_="check")
        batch.create_check_constraint("time_in_force", _NEW_TIF)
        batch.create_check_constraint("stop_trigger", "stop_trigger IN ('last', 'bid', 'ask')")
        batch.create_check_constraint(
            "gtd_has_expiry", "time_in_force <> 'GTD' OR expires_at IS NOT NULL"
        )
        batch.create_check_constraint(
            "post_only_is_limit", "post_only = false OR order_type = 'limit'"
        )
        batch.create_check_constraint("notional_positive", "CAST(notional AS NUMERIC) > 0")
    with op.batch_alter_table("positions") as batch:
        batch.add_column(sa.Column("entry_fees", Money(), nullable=False, server_default="0"))
        batch.create_check_constraint("entry_fees_non_negative", "CAST(entry_fees AS NUMERIC) >= 0")
    with op.batch_alter_table("trading_accounts") as batch:
        batch.alter_column("maker_fee_bps", existing_type=Money(), nullable=True)
        batch.alter_column("taker_fee_bps", existing_type=Money(), nullable=True)
    op.execute("UPDATE trading_accounts SET maker_fee_bps = NULL, taker_fee_bps = NULL")


def downgrade() -> None:
    op.execute(
        "UPDATE trading_accounts SET maker_fee_bps = COALESCE(maker_fee_bps, '0'), "
        "taker_fee_bps = COALESCE(taker_fee_bps, '0')"
    )
    with op.batch_alter_table("trading_accounts") as batch:
        batch.alter_column("maker_fee_bps", existing_type=Money(), nullable=False)
        batch.alter_column("taker_fee_bps", existing_type=Money(), nullable=False)
    with op.batch_alter_table("positions") as batch:
        batch.drop_constraint(op.f("ck_positions_entry_fees_non_negative"), type_="check")
        batch.drop_column("entry_fees")
    op.execute("UPDATE orders SET time_in_force = 'GTC' WHERE time_in_force IN ('DAY', 'GTD')")
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint(op.f("ck_orders_notional_positive"), type_="check")
        batch.drop_constraint(op.f("ck_orders_post_only_is_limit"), type_="check")
        batch.drop_constraint(op.f("ck_orders_gtd_has_expiry"), type_="check")
        batch.drop_constraint(op.f("ck_orders_stop_trigger"), type_="check")
        batch.drop_constraint(op.f("ck_orders_time_in_force"), type_="check")
        batch.create_check_constraint("time_in_force", _OLD_TIF)
        batch.drop_index(op.f("ix_orders_replaces_order_id"))
        batch.drop_constraint(op.f("fk_orders_replaces_order_id_orders"), type_="foreignkey")
        batch.drop_column("replaces_order_id")
        batch.drop_column("notional")
        batch.drop_column("expires_at")
        batch.drop_column("post_only")
        batch.drop_column("stop_trigger")
