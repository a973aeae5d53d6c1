"""Risk: measured metrics, alerts, a user's trading limits and the kill switches."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from database.orm.base import Base, CreatedAt, Timestamps, UUIDPrimaryKey
from database.orm.constraints import num, one_of, partial, positive
from database.orm.types import JSONType, Money, UTCDateTime
from database.orm.user import UserOwnedComposite
from models.risk import AlertType, KillScope, LimitType, Severity


class RiskMetric(UUIDPrimaryKey, UserOwnedComposite, CreatedAt, Base):
    """One measurement of an account (or, with no account, of all the user's accounts
    together). The seed's columns hold the headline figures; `metrics` the full set
    (docs/metrics.md)."""

    __tablename__ = "risk_metrics"
    __table_args__ = (
        Index(
            "ix_risk_metrics_user_id_account_id_calculated_at",
            "user_id",
            "account_id",
            "calculated_at",
        ),
    )

    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("trading_accounts.id", ondelete="CASCADE"), index=True
    )
    # Annualised volatility of the portfolio's daily returns.
    portfolio_risk: Mapped[Decimal | None] = mapped_column(Money)
    # One-day historical VaR at 95%, a positive loss in the account's currency.
    value_at_risk: Mapped[Decimal | None] = mapped_column(Money)
    max_drawdown: Mapped[Decimal | None] = mapped_column(Money)
    sharpe_ratio: Mapped[Decimal | None] = mapped_column(Money)
    position_risks: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    calculated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RiskAlert(UUIDPrimaryKey, UserOwnedComposite, CreatedAt, Base):
    __tablename__ = "risk_alerts"
    __table_args__ = (
        one_of("alert_type", AlertType),
        one_of("severity", Severity),
        Index("ix_risk_alerts_user_id_created_at", "user_id", "created_at"),
        Index(
            "ix_risk_alerts_unacknowledged",
            "user_id",
            "created_at",
            **partial("acknowledged = false"),
        ),
    )

    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("trading_accounts.id", ondelete="CASCADE"), index=True
    )
    limit_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("trading_limits.id", ondelete="SET NULL"), index=True
    )
    alert_type: Mapped[str] = mapped_column(String(50))
    severity: Mapped[str] = mapped_column(String(20))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TradingLimit(UUIDPrimaryKey, UserOwnedComposite, Timestamps, Base):
    """A user's limit (units per type in services/risk/state.py). No account: it holds
    on each of the user's accounts on its own. No symbol: global."""

    __tablename__ = "trading_limits"
    __table_args__ = (
        one_of("limit_type", LimitType),
        *positive("limit_value"),
        CheckConstraint(f"{num('current_value')} >= 0", name="current_value_non_negative"),
        Index("ix_trading_limits_user_id_is_active", "user_id", "is_active"),
    )

    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("trading_accounts.id", ondelete="CASCADE"), index=True
    )
    limit_type: Mapped[str] = mapped_column(String(50))
    symbol: Mapped[str | None] = mapped_column(String(50))
    limit_value: Mapped[Decimal] = mapped_column(Money)
    # The measure as the monitor last saw it; null until measured, and always for
    # order_notional (measured on each order, not on the account).
    current_value: Mapped[Decimal | None] = mapped_column(Money)
    # A breach engages the kill switch of the account (else it only refuses orders).
    kill_on_breach: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class KillSwitch(UUIDPrimaryKey, CreatedAt, Base):
    """An engaged kill switch stops every order of its scope except the flattening it
    ordered; it holds until released. Global switches have no user."""

    __tablename__ = "kill_switches"
    __table_args__ = (
        one_of("scope", KillScope),
        CheckConstraint(
            "(scope = 'global' AND user_id IS NULL AND account_id IS NULL)"
            " OR (scope = 'user' AND user_id IS NOT NULL AND account_id IS NULL)"
            " OR (scope = 'account' AND user_id IS NOT NULL AND account_id IS NOT NULL)",
            name="scope_matches_ids",
        ),
        Index("ix_kill_switches_engaged", "scope", "user_id", **partial("released_at IS NULL")),
    )

    scope: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("trading_accounts.id", ondelete="CASCADE"), index=True
    )
    reason: Mapped[str] = mapped_column(Text)
    # Who engaged it: a user, or null for the risk monitor.
    engaged_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    flatten: Mapped[bool] = mapped_column(Boolean, default=False)
    # What engaging it did: orders cancelled, positions flattened, agents paused.
    effects: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    engaged_at: Mapped[datetime] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
