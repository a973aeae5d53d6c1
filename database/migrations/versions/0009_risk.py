"""Risk: the seed's `risk_metrics`, `risk_alerts` and `trading_limits`, and the kill switches.

- `risk_metrics`: one measurement of an account (or, with no account, of all the user's
  accounts): the seed's headline columns plus the full set in `metrics` (docs/metrics.md).
- `risk_alerts`: the seed's columns plus the account and limit an alert is about and when
  it was acknowledged.
- `trading_limits`: the seed's columns plus the account a limit holds on (none: each of
  the user's accounts) and `kill_on_breach`.
- `kill_switches`: engaged by hand or by a breach, per account, user or globally; active
  until `released_at`.
- `trading_accounts.risk_version`: bumped when a limit or a kill switch over the account
  changes, so the pre-trade check knows when to re-read them (0 for existing accounts).

Downgrading drops the tables, what they held and the column.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from database.orm.types import Money, UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column(
        "trading_accounts",
        sa.Column("risk_version", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_table(
        "kill_switches",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("engaged_by", sa.Uuid(), nullable=True),
        sa.Column("flatten", sa.Boolean(), nullable=False),
        sa.Column("effects", _JSON, nullable=False),
        sa.Column("engaged_at", UTCDateTime(), nullable=False),
        sa.Column("released_at", UTCDateTime(), nullable=True),
        sa.Column("released_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "(scope = 'global' AND user_id IS NULL AND account_id IS NULL) OR (scope = 'user' AND user_id IS NOT NULL AND account_id IS NULL) OR (scope = 'account' AND user_id IS NOT NULL AND account_id IS NOT NULL)",
            name=op.f("ck_kill_switches_scope_matches_ids"),
        ),
        sa.CheckConstraint(
            "scope IN ('account', 'user', 'global')", name=op.f("ck_kill_switches_scope")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name=op.f("fk_kill_switches_account_id_trading_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["engaged_by"],
            ["users.id"],
            name=op.f("fk_kill_switches_engaged_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["released_by"],
            ["users.id"],
            name=op.f("fk_kill_switches_released_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_kill_switches_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kill_switches")),
    )
    with op.batch_alter_table("kill_switches", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_kill_switches_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            "ix_kill_switches_engaged",
            ["scope", "user_id"],
            unique=False,
            postgresql_where=sa.text("released_at IS NULL"),
            sqlite_where=sa.text("released_at IS NULL"),
        )
        batch_op.create_index(batch_op.f("ix_kill_switches_user_id"), ["user_id"], unique=False)

    op.create_table(
        "risk_metrics",
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("portfolio_risk", Money(), nullable=True),
        sa.Column("value_at_risk", Money(), nullable=True),
        sa.Column("max_drawdown", Money(), nullable=True),
        sa.Column("sharpe_ratio", Money(), nullable=True),
        sa.Column("position_risks", _JSON, nullable=False),
        sa.Column("metrics", _JSON, nullable=False),
        sa.Column("calculated_at", UTCDateTime(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name=op.f("fk_risk_metrics_account_id_trading_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_risk_metrics_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_metrics")),
    )
    with op.batch_alter_table("risk_metrics", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_risk_metrics_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            "ix_risk_metrics_user_id_account_id_calculated_at",
            ["user_id", "account_id", "calculated_at"],
            unique=False,
        )

    op.create_table(
        "trading_limits",
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("limit_type", sa.String(length=50), nullable=False),
        sa.Column("symbol", sa.String(length=50), nullable=True),
        sa.Column("limit_value", Money(), nullable=False),
        sa.Column("current_value", Money(), nullable=True),
        sa.Column("kill_on_breach", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "limit_type IN ('daily_loss', 'max_drawdown', 'position_size', 'gross_exposure', 'leverage', 'max_open_orders', 'order_notional')",
            name=op.f("ck_trading_limits_limit_type"),
        ),
        sa.CheckConstraint(
            "CAST(current_value AS NUMERIC) >= 0",
            name=op.f("ck_trading_limits_current_value_non_negative"),
        ),
        sa.CheckConstraint(
            "CAST(limit_value AS NUMERIC) > 0", name=op.f("ck_trading_limits_limit_value_positive")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name=op.f("fk_trading_limits_account_id_trading_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_trading_limits_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trading_limits")),
    )
    with op.batch_alter_table("trading_limits", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_trading_limits_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            "ix_trading_limits_user_id_is_active", ["user_id", "is_active"], unique=False
        )

    op.create_table(
        "risk_alerts",
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("limit_id", sa.Uuid(), nullable=True),
        sa.Column("alert_type", sa.String(length=50), nullable=False),
        sa.Column("severity", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", _JSON, nullable=False),
        sa.Column("acknowledged", sa.Boolean(), nullable=False),
        sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "alert_type IN ('var_breach', 'drawdown_limit', 'position_risk', 'limit_approached', 'limit_breached', 'kill_switch')",
            name=op.f("ck_risk_alerts_alert_type"),
        ),
        sa.CheckConstraint(
            "severity IN ('low', 'medium', 'high', 'critical')",
            name=op.f("ck_risk_alerts_severity"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name=op.f("fk_risk_alerts_account_id_trading_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["limit_id"],
            ["trading_limits.id"],
            name=op.f("fk_risk_alerts_limit_id_trading_limits"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_risk_alerts_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_alerts")),
    )
    with op.batch_alter_table("risk_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_risk_alerts_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_risk_alerts_limit_id"), ["limit_id"], unique=False)
        batch_op.create_index(
            "ix_risk_alerts_unacknowledged",
            ["user_id", "created_at"],
            unique=False,
            postgresql_where=sa.text("acknowledged = false"),
            sqlite_where=sa.text("acknowledged = false"),
        )
        batch_op.create_index(
            "ix_risk_alerts_user_id_created_at", ["user_id", "created_at"], unique=False
        )


def downgrade() -> None:
    # Dropping a table drops its indexes; the alerts go first (they refer to the limits).
    for table in ("risk_alerts", "trading_limits", "risk_metrics", "kill_switches"):
        op.drop_table(table)
    # Native DROP COLUMN on both (SQLite 3.35+).
    op.execute("ALTER TABLE trading_accounts DROP COLUMN risk_version")
