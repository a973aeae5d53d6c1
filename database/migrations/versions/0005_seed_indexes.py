"""The indexes seed 001 lists, for the queries this schema asks.

Seed 001 names seven indexes. Here, adapted to these tables (docs/schema.md, Indexes):

- `orders(user_id, status)` and `orders(symbol, created_at DESC)`: the order list is
  always one user's, filtered by status or symbol and newest first, so both lead with
  `user_id` and end with `created_at`.
- `trades(user_id, executed_at DESC)`, `positions(user_id, symbol)`: as written.
- `system_logs(level, created_at DESC)`: on `app_logs`.
- `market_data_ohlcv(symbol, timeframe, open_time DESC)`: not created; the unique key
  (symbol, exchange, timeframe, open_time) serves the candle query, which names the
  exchange. `trading_signals(created_at DESC)`: that table is not built yet.

All ascending: PostgreSQL and SQLite both read a B-tree backwards for `ORDER BY ... DESC`
after equalities on the leading columns. Each new index led by `user_id` or `level`
replaces the single-column index on that column, now its prefix, so a write maintains no
more indexes than before (orders: one more).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Each replacement exists before the index it replaces is dropped, so user_id (the
    # column of the CASCADE from users) is indexed throughout.
    op.create_index(
        op.f("ix_orders_user_id_status_created_at"),
        "orders",
        ["user_id", "status", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_orders_user_id_symbol_created_at"),
        "orders",
        ["user_id", "symbol", "created_at"],
        unique=False,
    )
    op.drop_index(op.f("ix_orders_user_id"), table_name="orders")

    op.create_index(
        op.f("ix_trades_user_id_executed_at"), "trades", ["user_id", "executed_at"], unique=False
    )
    op.drop_index(op.f("ix_trades_user_id"), table_name="trades")

    op.create_index(
        op.f("ix_positions_user_id_symbol"), "positions", ["user_id", "symbol"], unique=False
    )
    op.drop_index(op.f("ix_positions_user_id"), table_name="positions")

    op.create_index(
        op.f("ix_app_logs_level_created_at"), "app_logs", ["level", "created_at"], unique=False
    )
    op.drop_index(op.f("ix_app_logs_level"), table_name="app_logs")


def downgrade() -> None:
    op.create_index(op.f("ix_app_logs_level"), "app_logs", ["level"], unique=False)
    op.drop_index(op.f("ix_app_logs_level_created_at"), table_name="app_logs")

    op.create_index(op.f("ix_positions_user_id"), "positions", ["user_id"], unique=False)
    op.drop_index(op.f("ix_positions_user_id_symbol"), table_name="positions")

    op.create_index(op.f("ix_trades_user_id"), "trades", ["user_id"], unique=False)
    op.drop_index(op.f("ix_trades_user_id_executed_at"), table_name="trades")

    op.create_index(op.f("ix_orders_user_id"), "orders", ["user_id"], unique=False)
    op.drop_index(op.f("ix_orders_user_id_symbol_created_at"), table_name="orders")
    op.drop_index(op.f("ix_orders_user_id_status_created_at"), table_name="orders")
