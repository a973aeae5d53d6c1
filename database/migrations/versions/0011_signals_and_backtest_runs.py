"""Signals and backtest runs: the seed's `trading_signals`, stored runs, live-signal settings.

- `trading_signals`: the seed's columns (strength 0-100, confidence 0-1, stored exact)
  plus the owner, the timeframe and the open time of the closed candle a signal was read
  from; one per strategy, symbol, timeframe and candle.
- `backtest_runs`: one row per backtest, of a strategy or an agent, with its request,
  status and progress (a background run is a job), its summary and its result.
- `strategies.symbols` and `strategies.timeframe`: where an active strategy computes its
  live signals (existing strategies: none, and `1h`).

Downgrading drops both tables, what they held and the two columns.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import database.orm.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "backtest_runs",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("strategy_id", sa.Uuid(), nullable=True),
        sa.Column("agent_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "request",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("progress", database.orm.types.Money(precision=38, scale=18), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=True),
        sa.Column(
            "summary",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "result",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", database.orm.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", database.orm.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", database.orm.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(kind = 'strategy' AND strategy_id IS NOT NULL) OR (kind = 'agent' AND agent_id IS NOT NULL)",
            name=op.f("ck_backtest_runs_subject_matches_kind"),
        ),
        sa.CheckConstraint("kind IN ('strategy', 'agent')", name=op.f("ck_backtest_runs_kind")),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_backtest_runs_status"),
        ),
        sa.CheckConstraint(
            "CAST(progress AS NUMERIC) >= 0 AND CAST(progress AS NUMERIC) <= 1",
            name=op.f("ck_backtest_runs_progress_range"),
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_backtest_runs_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["strategy_id"],
            ["strategies.id"],
            name=op.f("fk_backtest_runs_strategy_id_strategies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_backtest_runs_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtest_runs")),
    )
    with op.batch_alter_table("backtest_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_backtest_runs_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_backtest_runs_strategy_id"), ["strategy_id"], unique=False
        )
        batch_op.create_index(
            "ix_backtest_runs_user_id_created_at", ["user_id", "created_at"], unique=False
        )

    op.create_table(
        "trading_signals",
        sa.Column("strategy_id", sa.Uuid(), nullable=True),
        sa.Column("agent_id", sa.Uuid(), nullable=True),
        sa.Column("symbol", sa.String(length=50), nullable=False),
        sa.Column("timeframe", sa.String(length=8), nullable=False),
        sa.Column(
            "candle_open_time", database.orm.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("strength", database.orm.types.Money(precision=38, scale=18), nullable=False),
        sa.Column("price", database.orm.types.Money(precision=38, scale=18), nullable=False),
        sa.Column("confidence", database.orm.types.Money(precision=38, scale=18), nullable=False),
        sa.Column("reasoning", sa.Text(), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", database.orm.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "action IN ('buy', 'sell', 'hold')", name=op.f("ck_trading_signals_action")
        ),
        sa.CheckConstraint(
            "CAST(confidence AS NUMERIC) >= 0 AND CAST(confidence AS NUMERIC) <= 1",
            name=op.f("ck_trading_signals_confidence_range"),
        ),
        sa.CheckConstraint(
            "CAST(price AS NUMERIC) > 0", name=op.f("ck_trading_signals_price_positive")
        ),
        sa.CheckConstraint(
            "CAST(strength AS NUMERIC) >= 0 AND CAST(strength AS NUMERIC) <= 100",
            name=op.f("ck_trading_signals_strength_range"),
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_trading_signals_agent_id_agents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["strategy_id"],
            ["strategies.id"],
            name=op.f("fk_trading_signals_strategy_id_strategies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_trading_signals_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trading_signals")),
        sa.UniqueConstraint(
            "strategy_id",
            "symbol",
            "timeframe",
            "candle_open_time",
            name=op.f("uq_trading_signals_strategy_id_symbol_timeframe_candle_open_time"),
        ),
    )
    with op.batch_alter_table("trading_signals", schema=None) as batch_op:
        batch_op.create_index("idx_signals_created", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_trading_signals_user_id_created_at", ["user_id", "created_at"], unique=False
        )

    with op.batch_alter_table("strategies", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "symbols",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
                nullable=False,
                server_default="[]",
            )
        )
        batch_op.add_column(
            sa.Column("timeframe", sa.String(length=8), nullable=False, server_default="1h")
        )
        batch_op.create_check_constraint("timeframe", "timeframe IN ('1m', '5m', '1h', '1d')")


def downgrade() -> None:
    with op.batch_alter_table("strategies", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_strategies_timeframe"), type_="check")
        batch_op.drop_column("timeframe")
        batch_op.drop_column("symbols")

    with op.batch_alter_table("trading_signals", schema=None) as batch_op:
        batch_op.drop_index("ix_trading_signals_user_id_created_at")
        batch_op.drop_index("idx_signals_created")

    op.drop_table("trading_signals")
    with op.batch_alter_table("backtest_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_backtest_runs_user_id_created_at")
        batch_op.drop_index(batch_op.f("ix_backtest_runs_strategy_id"))
        batch_op.drop_index(batch_op.f("ix_backtest_runs_agent_id"))

    op.drop_table("backtest_runs")
