"""Initial schema: users, agents and their decisions, the ledger, market data, operations.

See docs/schema.md for where each table of the two seed documents lives now and why.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of database/orm/types.py as of this revision, so this file keeps
# producing the same DDL whatever those types become.
# Money: NUMERIC(38, 18) on PostgreSQL, canonical fixed-scale text on SQLite.
MONEY = sa.Numeric(38, 18).with_variant(sa.String(40), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _partial(where: str) -> dict[str, Any]:
    return {"postgresql_where": sa.text(where), "sqlite_where": sa.text(where)}


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        sa.CheckConstraint("email = lower(email)", name=op.f("ck_users_email_lowercase")),
        sa.CheckConstraint("role IN ('admin', 'user')", name=op.f("ck_users_role")),
    )

    op.create_table(
        "strategies",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("strategy_type", sa.String(32), nullable=False),
        sa.Column("parameters", JSON, nullable=False),
        sa.Column("risk_level", sa.String(16), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("performance_metrics", JSON, nullable=False),
        sa.Column("backtest_results", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strategies")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_strategies_user_id_users"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint("user_id", "name", name=op.f("uq_strategies_user_id_name")),
        sa.CheckConstraint(
            "risk_level IN ('low', 'medium', 'high')", name=op.f("ck_strategies_risk_level")
        ),
        sa.CheckConstraint(
            "strategy_type IN ('momentum', 'mean_reversion', 'arbitrage', 'ml_prediction', 'custom')",
            name=op.f("ck_strategies_strategy_type"),
        ),
    )
    op.create_index(op.f("ix_strategies_user_id"), "strategies", ["user_id"], unique=False)

    op.create_table(
        "agents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("agent_type", sa.String(50), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("personality", JSON, nullable=False),
        sa.Column("strategies", JSON, nullable=False),
        sa.Column("symbols", JSON, nullable=False),
        sa.Column("paper_balance", MONEY, nullable=False),
        sa.Column("risk_tolerance", MONEY, nullable=False),
        sa.Column("max_position_pct", MONEY, nullable=False),
        sa.Column("llm_provider", sa.String(32), nullable=False),
        sa.Column("llm_model", sa.String(200), nullable=False),
        sa.Column("decision_interval_seconds", sa.Integer(), nullable=False),
        sa.Column("daily_cost_budget", MONEY, nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("last_decision_at", TIMESTAMP, nullable=True),
        sa.Column("deleted_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_agents_user_id_users"), ondelete="CASCADE"
        ),
        sa.CheckConstraint(
            "CAST(daily_cost_budget AS NUMERIC) >= 0",
            name=op.f("ck_agents_daily_cost_budget_non_negative"),
        ),
        sa.CheckConstraint(
            "CAST(decision_interval_seconds AS NUMERIC) > 0",
            name=op.f("ck_agents_decision_interval_seconds_positive"),
        ),
        sa.CheckConstraint(
            "deleted_at IS NULL OR status <> 'active'", name=op.f("ck_agents_deleted_not_active")
        ),
        sa.CheckConstraint(
            "llm_provider IN ('local', 'openai', 'anthropic', 'openrouter', 'openai_compatible')",
            name=op.f("ck_agents_llm_provider"),
        ),
        sa.CheckConstraint(
            "CAST(max_position_pct AS NUMERIC) > 0 AND CAST(max_position_pct AS NUMERIC) <= 100",
            name=op.f("ck_agents_max_position_pct_range"),
        ),
        sa.CheckConstraint(
            "CAST(paper_balance AS NUMERIC) > 0", name=op.f("ck_agents_paper_balance_positive")
        ),
        sa.CheckConstraint(
            "CAST(risk_tolerance AS NUMERIC) >= 0 AND CAST(risk_tolerance AS NUMERIC) <= 1",
            name=op.f("ck_agents_risk_tolerance_range"),
        ),
        sa.CheckConstraint(
            "status IN ('active', 'inactive', 'paused', 'error')", name=op.f("ck_agents_status")
        ),
    )
    op.create_index(op.f("ix_agents_agent_type"), "agents", ["agent_type"], unique=False)
    op.create_index(op.f("ix_agents_status"), "agents", ["status"], unique=False)
    op.create_index(op.f("ix_agents_user_id"), "agents", ["user_id"], unique=False)
    op.create_index(
        op.f("uq_agents_user_id_name_live"),
        "agents",
        ["user_id", "name"],
        unique=True,
        **_partial("deleted_at IS NULL"),
    )

    op.create_table(
        "llm_calls",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("request", JSON, nullable=False),
        sa.Column("raw_response", sa.Text(), nullable=True),
        sa.Column("parsed", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost", MONEY, nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_calls")),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_llm_calls_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_llm_calls_user_id_users"), ondelete="CASCADE"
        ),
        sa.CheckConstraint(
            "CAST(completion_tokens AS NUMERIC) >= 0",
            name=op.f("ck_llm_calls_completion_tokens_non_negative"),
        ),
        sa.CheckConstraint(
            "CAST(cost AS NUMERIC) >= 0", name=op.f("ck_llm_calls_cost_non_negative")
        ),
        sa.CheckConstraint(
            "CAST(latency_ms AS NUMERIC) >= 0", name=op.f("ck_llm_calls_latency_ms_non_negative")
        ),
        sa.CheckConstraint(
            "CAST(prompt_tokens AS NUMERIC) >= 0",
            name=op.f("ck_llm_calls_prompt_tokens_non_negative"),
        ),
        sa.CheckConstraint(
            "provider IN ('local', 'openai', 'anthropic', 'openrouter', 'openai_compatible')",
            name=op.f("ck_llm_calls_provider"),
        ),
    )
    op.create_index(
        op.f("ix_llm_calls_agent_id_created_at"),
        "llm_calls",
        ["agent_id", "created_at"],
        unique=False,
    )
    op.create_index(op.f("ix_llm_calls_user_id"), "llm_calls", ["user_id"], unique=False)

    op.create_table(
        "agent_decisions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("decision_type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("symbol", sa.String(32), nullable=True),
        sa.Column("side", sa.String(4), nullable=True),
        sa.Column("quantity", MONEY, nullable=True),
        sa.Column("price", MONEY, nullable=True),
        sa.Column("order_type", sa.String(16), nullable=True),
        sa.Column("confidence_score", MONEY, nullable=True),
        sa.Column("reasoning", sa.Text(), nullable=False),
        sa.Column("market_data", JSON, nullable=False),
        sa.Column("result", JSON, nullable=False),
        sa.Column("execution_time_ms", sa.Integer(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost", MONEY, nullable=False),
        sa.Column("llm_call_id", sa.Uuid(), nullable=True),
        sa.Column("coordination_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_decisions")),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_decisions_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["llm_call_id"],
            ["llm_calls.id"],
            name=op.f("fk_agent_decisions_llm_call_id_llm_calls"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_agent_decisions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "CAST(completion_tokens AS NUMERIC) >= 0",
            name=op.f("ck_agent_decisions_completion_tokens_non_negative"),
        ),
        sa.CheckConstraint(
            "CAST(confidence_score AS NUMERIC) >= 0 AND CAST(confidence_score AS NUMERIC) <= 1",
            name=op.f("ck_agent_decisions_confidence_score_range"),
        ),
        sa.CheckConstraint(
            "CAST(cost AS NUMERIC) >= 0", name=op.f("ck_agent_decisions_cost_non_negative")
        ),
        sa.CheckConstraint(
            "decision_type IN ('trade', 'hold', 'rebalance', 'analysis', 'risk_check')",
            name=op.f("ck_agent_decisions_decision_type"),
        ),
        sa.CheckConstraint(
            "CAST(execution_time_ms AS NUMERIC) >= 0",
            name=op.f("ck_agent_decisions_execution_time_ms_non_negative"),
        ),
        sa.CheckConstraint(
            "order_type IN ('market', 'limit', 'stop', 'stop_limit')",
            name=op.f("ck_agent_decisions_order_type"),
        ),
        sa.CheckConstraint(
            "CAST(price AS NUMERIC) > 0", name=op.f("ck_agent_decisions_price_positive")
        ),
        sa.CheckConstraint(
            "CAST(prompt_tokens AS NUMERIC) >= 0",
            name=op.f("ck_agent_decisions_prompt_tokens_non_negative"),
        ),
        sa.CheckConstraint(
            "CAST(quantity AS NUMERIC) > 0", name=op.f("ck_agent_decisions_quantity_positive")
        ),
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_agent_decisions_side")),
        sa.CheckConstraint(
            "status IN ('executed', 'rejected', 'skipped', 'error')",
            name=op.f("ck_agent_decisions_status"),
        ),
    )
    op.create_index(
        op.f("ix_agent_decisions_agent_id_created_at"),
        "agent_decisions",
        ["agent_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_agent_decisions_coordination_id"),
        "agent_decisions",
        ["coordination_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_agent_decisions_decision_type"), "agent_decisions", ["decision_type"], unique=False
    )
    op.create_index(
        op.f("ix_agent_decisions_llm_call_id"), "agent_decisions", ["llm_call_id"], unique=False
    )
    op.create_index(
        op.f("ix_agent_decisions_user_id"), "agent_decisions", ["user_id"], unique=False
    )

    op.create_table(
        "agent_files",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("storage_path", sa.String(1024), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("uploaded_at", TIMESTAMP, nullable=False),
        sa.Column("agent_ingested", sa.Boolean(), nullable=False),
        sa.Column("ingested_at", TIMESTAMP, nullable=True),
        sa.Column("processing_status", sa.String(16), nullable=False),
        sa.Column("processing_error", sa.Text(), nullable=True),
        sa.Column("file_metadata", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_files")),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_files_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_agent_files_user_id_users"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint("storage_path", name=op.f("uq_agent_files_storage_path")),
        sa.CheckConstraint(
            "processing_status IN ('pending', 'processing', 'completed', 'error')",
            name=op.f("ck_agent_files_processing_status"),
        ),
        sa.CheckConstraint(
            "CAST(size_bytes AS NUMERIC) >= 0", name=op.f("ck_agent_files_size_bytes_non_negative")
        ),
    )
    op.create_index(op.f("ix_agent_files_agent_id"), "agent_files", ["agent_id"], unique=False)
    op.create_index(op.f("ix_agent_files_user_id"), "agent_files", ["user_id"], unique=False)

    op.create_table(
        "exchange_credentials",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("exchange", sa.String(32), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("api_key_encrypted", sa.Text(), nullable=False),
        sa.Column("api_secret_encrypted", sa.Text(), nullable=False),
        sa.Column("passphrase_encrypted", sa.Text(), nullable=True),
        sa.Column("key_hint", sa.String(16), nullable=True),
        sa.Column("is_testnet", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_credentials")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_exchange_credentials_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "user_id",
            "exchange",
            "label",
            name=op.f("uq_exchange_credentials_user_id_exchange_label"),
        ),
    )
    op.create_index(
        op.f("ix_exchange_credentials_user_id"), "exchange_credentials", ["user_id"], unique=False
    )

    op.create_table(
        "trading_accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=True),
        sa.Column("account_name", sa.String(100), nullable=False),
        sa.Column("account_type", sa.String(16), nullable=False),
        sa.Column("exchange", sa.String(32), nullable=False),
        sa.Column("base_currency", sa.String(16), nullable=False),
        sa.Column("initial_balance", MONEY, nullable=False),
        sa.Column("maker_fee_bps", MONEY, nullable=False),
        sa.Column("taker_fee_bps", MONEY, nullable=False),
        sa.Column("realized_pnl", MONEY, nullable=False),
        sa.Column("total_fees", MONEY, nullable=False),
        sa.Column("total_trades", sa.Integer(), nullable=False),
        sa.Column("winning_trades", sa.Integer(), nullable=False),
        sa.Column("losing_trades", sa.Integer(), nullable=False),
        sa.Column("max_drawdown", MONEY, nullable=False),
        sa.Column("sharpe_ratio", MONEY, nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("credentials_id", sa.Uuid(), nullable=True),
        sa.Column("last_sync_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trading_accounts")),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_trading_accounts_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["credentials_id"],
            ["exchange_credentials.id"],
            name=op.f("fk_trading_accounts_credentials_id_exchange_credentials"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_trading_accounts_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "user_id",
            "agent_id",
            "account_name",
            name=op.f("uq_trading_accounts_user_id_agent_id_account_name"),
        ),
        sa.CheckConstraint(
            "account_type IN ('paper', 'testnet', 'mainnet')",
            name=op.f("ck_trading_accounts_account_type"),
        ),
        sa.CheckConstraint(
            "is_default = false OR agent_id IS NULL",
            name=op.f("ck_trading_accounts_default_has_no_agent"),
        ),
        sa.CheckConstraint(
            "CAST(initial_balance AS NUMERIC) >= 0",
            name=op.f("ck_trading_accounts_initial_balance_non_negative"),
        ),
        sa.CheckConstraint(
            "CAST(losing_trades AS NUMERIC) >= 0",
            name=op.f("ck_trading_accounts_losing_trades_non_negative"),
        ),
        sa.CheckConstraint(
            "CAST(maker_fee_bps AS NUMERIC) >= 0",
            name=op.f("ck_trading_accounts_maker_fee_bps_non_negative"),
        ),
        sa.CheckConstraint(
            "CAST(max_drawdown AS NUMERIC) >= 0 AND CAST(max_drawdown AS NUMERIC) <= 1",
            name=op.f("ck_trading_accounts_max_drawdown_range"),
        ),
        sa.CheckConstraint(
            "account_type <> 'paper' OR credentials_id IS NULL",
            name=op.f("ck_trading_accounts_paper_has_no_credentials"),
        ),
        sa.CheckConstraint(
            "CAST(taker_fee_bps AS NUMERIC) >= 0",
            name=op.f("ck_trading_accounts_taker_fee_bps_non_negative"),
        ),
        sa.CheckConstraint(
            "CAST(total_fees AS NUMERIC) >= 0",
            name=op.f("ck_trading_accounts_total_fees_non_negative"),
        ),
        sa.CheckConstraint(
            "CAST(total_trades AS NUMERIC) >= 0",
            name=op.f("ck_trading_accounts_total_trades_non_negative"),
        ),
        sa.CheckConstraint(
            "winning_trades + losing_trades <= total_trades",
            name=op.f("ck_trading_accounts_trade_counts_consistent"),
        ),
        sa.CheckConstraint(
            "CAST(winning_trades AS NUMERIC) >= 0",
            name=op.f("ck_trading_accounts_winning_trades_non_negative"),
        ),
    )
    op.create_index(
        op.f("ix_trading_accounts_agent_id"), "trading_accounts", ["agent_id"], unique=False
    )
    op.create_index(
        op.f("ix_trading_accounts_credentials_id"),
        "trading_accounts",
        ["credentials_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_trading_accounts_user_id"), "trading_accounts", ["user_id"], unique=False
    )
    op.create_index(
        op.f("uq_trading_accounts_default"),
        "trading_accounts",
        ["user_id"],
        unique=True,
        **_partial("is_default"),
    )
    op.create_index(
        op.f("uq_trading_accounts_user_id_account_name_no_agent"),
        "trading_accounts",
        ["user_id", "account_name"],
        unique=True,
        **_partial("agent_id IS NULL"),
    )

    op.create_table(
        "account_balances",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("asset", sa.String(16), nullable=False),
        sa.Column("free", MONEY, nullable=False),
        sa.Column("locked", MONEY, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_balances")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name=op.f("fk_account_balances_account_id_trading_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_account_balances_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "account_id", "asset", name=op.f("uq_account_balances_account_id_asset")
        ),
        sa.CheckConstraint(
            "CAST(free AS NUMERIC) >= 0", name=op.f("ck_account_balances_free_non_negative")
        ),
        sa.CheckConstraint(
            "CAST(locked AS NUMERIC) >= 0", name=op.f("ck_account_balances_locked_non_negative")
        ),
    )
    op.create_index(
        op.f("ix_account_balances_user_id"), "account_balances", ["user_id"], unique=False
    )

    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=True),
        sa.Column("decision_id", sa.Uuid(), nullable=True),
        sa.Column("client_order_id", sa.String(64), nullable=True),
        sa.Column("exchange_order_id", sa.String(128), nullable=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("order_type", sa.String(16), nullable=False),
        sa.Column("time_in_force", sa.String(3), nullable=False),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("price", MONEY, nullable=True),
        sa.Column("stop_price", MONEY, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("filled_quantity", MONEY, nullable=False),
        sa.Column("average_price", MONEY, nullable=True),
        sa.Column("fees", MONEY, nullable=False),
        sa.Column("locked_amount", MONEY, nullable=False),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("strategy", sa.String(100), nullable=True),
        sa.Column("reasoning", sa.Text(), nullable=True),
        sa.Column("market_data", JSON, nullable=False),
        sa.Column("triggered_at", TIMESTAMP, nullable=True),
        sa.Column("closed_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name=op.f("fk_orders_account_id_trading_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_orders_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["agent_decisions.id"],
            name=op.f("fk_orders_decision_id_agent_decisions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_orders_user_id_users"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint(
            "account_id", "client_order_id", name=op.f("uq_orders_account_id_client_order_id")
        ),
        sa.UniqueConstraint(
            "account_id", "exchange_order_id", name=op.f("uq_orders_account_id_exchange_order_id")
        ),
        sa.CheckConstraint(
            "CAST(average_price AS NUMERIC) > 0", name=op.f("ck_orders_average_price_positive")
        ),
        sa.CheckConstraint("CAST(fees AS NUMERIC) >= 0", name=op.f("ck_orders_fees_non_negative")),
        sa.CheckConstraint(
            "status <> 'filled' OR filled_quantity = quantity",
            name=op.f("ck_orders_filled_means_complete"),
        ),
        sa.CheckConstraint(
            "CAST(filled_quantity AS NUMERIC) >= 0",
            name=op.f("ck_orders_filled_quantity_non_negative"),
        ),
        sa.CheckConstraint(
            "CAST(filled_quantity AS NUMERIC) <= CAST(quantity AS NUMERIC)",
            name=op.f("ck_orders_filled_within_quantity"),
        ),
        sa.CheckConstraint(
            "order_type NOT IN ('limit', 'stop_limit') OR price IS NOT NULL",
            name=op.f("ck_orders_limit_has_price"),
        ),
        sa.CheckConstraint(
            "CAST(locked_amount AS NUMERIC) >= 0", name=op.f("ck_orders_locked_amount_non_negative")
        ),
        sa.CheckConstraint(
            "order_type IN ('market', 'limit', 'stop', 'stop_limit')",
            name=op.f("ck_orders_order_type"),
        ),
        sa.CheckConstraint("CAST(price AS NUMERIC) > 0", name=op.f("ck_orders_price_positive")),
        sa.CheckConstraint(
            "CAST(quantity AS NUMERIC) > 0", name=op.f("ck_orders_quantity_positive")
        ),
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_orders_side")),
        sa.CheckConstraint(
            "status IN ('pending', 'partial', 'filled', 'cancelled', 'rejected')",
            name=op.f("ck_orders_status"),
        ),
        sa.CheckConstraint(
            "order_type NOT IN ('stop', 'stop_limit') OR stop_price IS NOT NULL",
            name=op.f("ck_orders_stop_has_stop_price"),
        ),
        sa.CheckConstraint(
            "CAST(stop_price AS NUMERIC) > 0", name=op.f("ck_orders_stop_price_positive")
        ),
        sa.CheckConstraint(
            "time_in_force IN ('GTC', 'IOC', 'FOK')", name=op.f("ck_orders_time_in_force")
        ),
    )
    op.create_index(
        op.f("ix_orders_account_id_created_at"),
        "orders",
        ["account_id", "created_at"],
        unique=False,
    )
    op.create_index(op.f("ix_orders_agent_id"), "orders", ["agent_id"], unique=False)
    op.create_index(op.f("ix_orders_decision_id"), "orders", ["decision_id"], unique=False)
    op.create_index(
        op.f("ix_orders_open_by_account"),
        "orders",
        ["account_id"],
        unique=False,
        **_partial("status IN ('pending', 'partial')"),
    )
    op.create_index(
        op.f("ix_orders_open_by_symbol"),
        "orders",
        ["symbol"],
        unique=False,
        **_partial("status IN ('pending', 'partial')"),
    )
    op.create_index(op.f("ix_orders_user_id"), "orders", ["user_id"], unique=False)

    op.create_table(
        "trades",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("exchange_trade_id", sa.String(128), nullable=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("price", MONEY, nullable=False),
        sa.Column("fee", MONEY, nullable=False),
        sa.Column("fee_asset", sa.String(16), nullable=False),
        sa.Column("liquidity", sa.String(5), nullable=False),
        sa.Column("realized_pnl", MONEY, nullable=False),
        sa.Column("executed_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trades")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name=op.f("fk_trades_account_id_trading_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_trades_order_id_orders"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_trades_user_id_users"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint(
            "account_id", "exchange_trade_id", name=op.f("uq_trades_account_id_exchange_trade_id")
        ),
        sa.CheckConstraint("CAST(fee AS NUMERIC) >= 0", name=op.f("ck_trades_fee_non_negative")),
        sa.CheckConstraint("liquidity IN ('maker', 'taker')", name=op.f("ck_trades_liquidity")),
        sa.CheckConstraint("CAST(price AS NUMERIC) > 0", name=op.f("ck_trades_price_positive")),
        sa.CheckConstraint(
            "CAST(quantity AS NUMERIC) > 0", name=op.f("ck_trades_quantity_positive")
        ),
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_trades_side")),
    )
    op.create_index(
        op.f("ix_trades_account_id_executed_at"),
        "trades",
        ["account_id", "executed_at"],
        unique=False,
    )
    op.create_index(op.f("ix_trades_order_id"), "trades", ["order_id"], unique=False)
    op.create_index(op.f("ix_trades_symbol"), "trades", ["symbol"], unique=False)
    op.create_index(op.f("ix_trades_user_id"), "trades", ["user_id"], unique=False)

    op.create_table(
        "positions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("avg_price", MONEY, nullable=False),
        sa.Column("realized_pnl", MONEY, nullable=False),
        sa.Column("last_trade_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_positions")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name=op.f("fk_positions_account_id_trading_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_positions_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_positions_user_id_users"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint("account_id", "symbol", name=op.f("uq_positions_account_id_symbol")),
        sa.CheckConstraint(
            "CAST(avg_price AS NUMERIC) >= 0", name=op.f("ck_positions_avg_price_non_negative")
        ),
        sa.CheckConstraint(
            "CAST(quantity AS NUMERIC) >= 0", name=op.f("ck_positions_quantity_non_negative")
        ),
    )
    op.create_index(op.f("ix_positions_agent_id"), "positions", ["agent_id"], unique=False)
    op.create_index(op.f("ix_positions_user_id"), "positions", ["user_id"], unique=False)

    op.create_table(
        "portfolio_snapshots",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("equity", MONEY, nullable=False),
        sa.Column("cash", MONEY, nullable=False),
        sa.Column("positions_value", MONEY, nullable=False),
        sa.Column("realized_pnl", MONEY, nullable=False),
        sa.Column("unrealized_pnl", MONEY, nullable=False),
        sa.Column("fees", MONEY, nullable=False),
        sa.Column("taken_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portfolio_snapshots")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name=op.f("fk_portfolio_snapshots_account_id_trading_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_portfolio_snapshots_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "CAST(cash AS NUMERIC) >= 0", name=op.f("ck_portfolio_snapshots_cash_non_negative")
        ),
        sa.CheckConstraint(
            "CAST(equity AS NUMERIC) >= 0", name=op.f("ck_portfolio_snapshots_equity_non_negative")
        ),
        sa.CheckConstraint(
            "CAST(fees AS NUMERIC) >= 0", name=op.f("ck_portfolio_snapshots_fees_non_negative")
        ),
        sa.CheckConstraint(
            "CAST(positions_value AS NUMERIC) >= 0",
            name=op.f("ck_portfolio_snapshots_positions_value_non_negative"),
        ),
    )
    op.create_index(
        op.f("ix_portfolio_snapshots_account_id_taken_at"),
        "portfolio_snapshots",
        ["account_id", "taken_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_portfolio_snapshots_user_id"), "portfolio_snapshots", ["user_id"], unique=False
    )

    op.create_table(
        "trading_pairs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("exchange", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("base_asset", sa.String(16), nullable=False),
        sa.Column("quote_asset", sa.String(16), nullable=False),
        sa.Column("asset_class", sa.String(16), nullable=False),
        sa.Column("tick_size", MONEY, nullable=False),
        sa.Column("step_size", MONEY, nullable=False),
        sa.Column("min_quantity", MONEY, nullable=False),
        sa.Column("max_quantity", MONEY, nullable=True),
        sa.Column("min_notional", MONEY, nullable=False),
        sa.Column("maker_fee_bps", MONEY, nullable=False),
        sa.Column("taker_fee_bps", MONEY, nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trading_pairs")),
        sa.UniqueConstraint("exchange", "symbol", name=op.f("uq_trading_pairs_exchange_symbol")),
        sa.CheckConstraint(
            "asset_class IN ('crypto', 'equity')", name=op.f("ck_trading_pairs_asset_class")
        ),
        sa.CheckConstraint(
            "CAST(maker_fee_bps AS NUMERIC) >= 0",
            name=op.f("ck_trading_pairs_maker_fee_bps_non_negative"),
        ),
        sa.CheckConstraint(
            "CAST(max_quantity AS NUMERIC) > 0", name=op.f("ck_trading_pairs_max_quantity_positive")
        ),
        sa.CheckConstraint(
            "CAST(min_notional AS NUMERIC) >= 0",
            name=op.f("ck_trading_pairs_min_notional_non_negative"),
        ),
        sa.CheckConstraint(
            "CAST(min_quantity AS NUMERIC) >= 0",
            name=op.f("ck_trading_pairs_min_quantity_non_negative"),
        ),
        sa.CheckConstraint(
            "max_quantity IS NULL OR CAST(min_quantity AS NUMERIC) <= CAST(max_quantity AS NUMERIC)",
            name=op.f("ck_trading_pairs_quantity_bounds"),
        ),
        sa.CheckConstraint(
            "CAST(step_size AS NUMERIC) > 0", name=op.f("ck_trading_pairs_step_size_positive")
        ),
        sa.CheckConstraint(
            "CAST(taker_fee_bps AS NUMERIC) >= 0",
            name=op.f("ck_trading_pairs_taker_fee_bps_non_negative"),
        ),
        sa.CheckConstraint(
            "CAST(tick_size AS NUMERIC) > 0", name=op.f("ck_trading_pairs_tick_size_positive")
        ),
    )

    op.create_table(
        "price_tickers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("exchange", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("price", MONEY, nullable=False),
        sa.Column("bid", MONEY, nullable=True),
        sa.Column("ask", MONEY, nullable=True),
        sa.Column("volume_24h", MONEY, nullable=False),
        sa.Column("quote_volume_24h", MONEY, nullable=True),
        sa.Column("open_24h", MONEY, nullable=True),
        sa.Column("high_24h", MONEY, nullable=True),
        sa.Column("low_24h", MONEY, nullable=True),
        sa.Column("change_24h", MONEY, nullable=False),
        sa.Column("change_percent_24h", MONEY, nullable=False),
        sa.Column("market_cap", MONEY, nullable=True),
        sa.Column("raw_data", JSON, nullable=False),
        sa.Column("observed_at", TIMESTAMP, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_price_tickers")),
        sa.UniqueConstraint("exchange", "symbol", name=op.f("uq_price_tickers_exchange_symbol")),
        sa.CheckConstraint("CAST(ask AS NUMERIC) > 0", name=op.f("ck_price_tickers_ask_positive")),
        sa.CheckConstraint("CAST(bid AS NUMERIC) > 0", name=op.f("ck_price_tickers_bid_positive")),
        sa.CheckConstraint(
            "CAST(market_cap AS NUMERIC) >= 0",
            name=op.f("ck_price_tickers_market_cap_non_negative"),
        ),
        sa.CheckConstraint(
            "CAST(price AS NUMERIC) > 0", name=op.f("ck_price_tickers_price_positive")
        ),
        sa.CheckConstraint(
            "CAST(quote_volume_24h AS NUMERIC) >= 0",
            name=op.f("ck_price_tickers_quote_volume_24h_non_negative"),
        ),
        sa.CheckConstraint(
            "CAST(volume_24h AS NUMERIC) >= 0",
            name=op.f("ck_price_tickers_volume_24h_non_negative"),
        ),
    )
    op.create_index(op.f("ix_price_tickers_symbol"), "price_tickers", ["symbol"], unique=False)

    op.create_table(
        "market_data_ohlcv",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("exchange", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("timeframe", sa.String(4), nullable=False),
        sa.Column("open_time", TIMESTAMP, nullable=False),
        sa.Column("close_time", TIMESTAMP, nullable=False),
        sa.Column("open", MONEY, nullable=False),
        sa.Column("high", MONEY, nullable=False),
        sa.Column("low", MONEY, nullable=False),
        sa.Column("close", MONEY, nullable=False),
        sa.Column("volume", MONEY, nullable=False),
        sa.Column("quote_volume", MONEY, nullable=True),
        sa.Column("trade_count", sa.Integer(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_data_ohlcv")),
        sa.UniqueConstraint(
            "symbol",
            "exchange",
            "timeframe",
            "open_time",
            name=op.f("uq_market_data_ohlcv_symbol_exchange_timeframe_open_time"),
        ),
        sa.CheckConstraint(
            "CAST(low AS NUMERIC) <= CAST(open AS NUMERIC) AND CAST(low AS NUMERIC) <= CAST(close AS NUMERIC) AND CAST(high AS NUMERIC) >= CAST(open AS NUMERIC) AND CAST(high AS NUMERIC) >= CAST(close AS NUMERIC)",
            name=op.f("ck_market_data_ohlcv_bar_consistent"),
        ),
        sa.CheckConstraint(
            "close_time > open_time", name=op.f("ck_market_data_ohlcv_close_after_open")
        ),
        sa.CheckConstraint(
            "CAST(close AS NUMERIC) > 0", name=op.f("ck_market_data_ohlcv_close_positive")
        ),
        sa.CheckConstraint(
            "CAST(high AS NUMERIC) > 0", name=op.f("ck_market_data_ohlcv_high_positive")
        ),
        sa.CheckConstraint(
            "CAST(low AS NUMERIC) > 0", name=op.f("ck_market_data_ohlcv_low_positive")
        ),
        sa.CheckConstraint(
            "CAST(open AS NUMERIC) > 0", name=op.f("ck_market_data_ohlcv_open_positive")
        ),
        sa.CheckConstraint(
            "CAST(quote_volume AS NUMERIC) >= 0",
            name=op.f("ck_market_data_ohlcv_quote_volume_non_negative"),
        ),
        sa.CheckConstraint(
            "timeframe IN ('1m', '5m', '1h', '1d')", name=op.f("ck_market_data_ohlcv_timeframe")
        ),
        sa.CheckConstraint(
            "CAST(trade_count AS NUMERIC) >= 0",
            name=op.f("ck_market_data_ohlcv_trade_count_non_negative"),
        ),
        sa.CheckConstraint(
            "CAST(volume AS NUMERIC) >= 0", name=op.f("ck_market_data_ohlcv_volume_non_negative")
        ),
    )

    op.create_table(
        "order_book_snapshots",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("exchange", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("bids", JSON, nullable=False),
        sa.Column("asks", JSON, nullable=False),
        sa.Column("best_bid", MONEY, nullable=True),
        sa.Column("best_ask", MONEY, nullable=True),
        sa.Column("spread", MONEY, nullable=True),
        sa.Column("mid", MONEY, nullable=True),
        sa.Column("sequence", sa.BigInteger(), nullable=True),
        sa.Column("taken_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_book_snapshots")),
        sa.CheckConstraint(
            "CAST(best_ask AS NUMERIC) > 0", name=op.f("ck_order_book_snapshots_best_ask_positive")
        ),
        sa.CheckConstraint(
            "CAST(best_bid AS NUMERIC) > 0", name=op.f("ck_order_book_snapshots_best_bid_positive")
        ),
        sa.CheckConstraint(
            "CAST(mid AS NUMERIC) > 0", name=op.f("ck_order_book_snapshots_mid_positive")
        ),
    )
    op.create_index(
        op.f("ix_order_book_snapshots_exchange_symbol_taken_at"),
        "order_book_snapshots",
        ["exchange", "symbol", "taken_at"],
        unique=False,
    )

    op.create_table(
        "watchlist_items",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watchlist_items")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_watchlist_items_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("user_id", "symbol", name=op.f("uq_watchlist_items_user_id_symbol")),
    )
    op.create_index(
        op.f("ix_watchlist_items_user_id"), "watchlist_items", ["user_id"], unique=False
    )

    op.create_table(
        "system_metrics",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("metric_type", sa.String(64), nullable=False),
        sa.Column("metric_name", sa.String(128), nullable=False),
        sa.Column("value", MONEY, nullable=False),
        sa.Column("unit", sa.String(32), nullable=True),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_system_metrics")),
    )
    op.create_index(
        op.f("ix_system_metrics_created_at"), "system_metrics", ["created_at"], unique=False
    )
    op.create_index(
        op.f("ix_system_metrics_metric_name_created_at"),
        "system_metrics",
        ["metric_name", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_system_metrics_metric_type"), "system_metrics", ["metric_type"], unique=False
    )

    op.create_table(
        "app_logs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("component", sa.String(100), nullable=True),
        sa.Column("agent_id", sa.Uuid(), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("context", JSON, nullable=False),
        sa.Column("stack_trace", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_logs")),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_app_logs_agent_id_agents"),
            ondelete="SET NULL",
        ),
        sa.CheckConstraint(
            "level IN ('debug', 'info', 'warning', 'error', 'critical')",
            name=op.f("ck_app_logs_level"),
        ),
    )
    op.create_index(op.f("ix_app_logs_agent_id"), "app_logs", ["agent_id"], unique=False)
    op.create_index(op.f("ix_app_logs_component"), "app_logs", ["component"], unique=False)
    op.create_index(op.f("ix_app_logs_created_at"), "app_logs", ["created_at"], unique=False)
    op.create_index(op.f("ix_app_logs_level"), "app_logs", ["level"], unique=False)

    op.create_table(
        "event_outbox",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("channel", sa.String(200), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=True),
        sa.Column("published_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_outbox")),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_event_outbox_agent_id_agents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_event_outbox_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("channel", "seq", name=op.f("uq_event_outbox_channel_seq")),
        sa.CheckConstraint("seq > 0", name=op.f("ck_event_outbox_seq_positive")),
    )
    op.create_index(op.f("ix_event_outbox_agent_id"), "event_outbox", ["agent_id"], unique=False)
    op.create_index(
        op.f("ix_event_outbox_created_at"), "event_outbox", ["created_at"], unique=False
    )
    op.create_index(
        op.f("ix_event_outbox_unpublished"),
        "event_outbox",
        ["created_at"],
        unique=False,
        **_partial("published_at IS NULL"),
    )
    op.create_index(op.f("ix_event_outbox_user_id"), "event_outbox", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_table("event_outbox")
    op.drop_table("app_logs")
    op.drop_table("system_metrics")
    op.drop_table("watchlist_items")
    op.drop_table("order_book_snapshots")
    op.drop_table("market_data_ohlcv")
    op.drop_table("price_tickers")
    op.drop_table("trading_pairs")
    op.drop_table("portfolio_snapshots")
    op.drop_table("positions")
    op.drop_table("trades")
    op.drop_table("orders")
    op.drop_table("account_balances")
    op.drop_table("trading_accounts")
    op.drop_table("exchange_credentials")
    op.drop_table("agent_files")
    op.drop_table("agent_decisions")
    op.drop_table("llm_calls")
    op.drop_table("agents")
    op.drop_table("strategies")
    op.drop_table("users")
