"""Trading strategies a user's agents can follow."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from database.orm.base import Base, CreatedAt, Timestamps, UUIDPrimaryKey
from database.orm.constraints import num, one_of, positive, unit_interval
from database.orm.types import JSONType, Money, UTCDateTime
from database.orm.user import UserOwned, UserOwnedComposite
from models.enums import (
    BacktestKind,
    BacktestStatus,
    RiskLevel,
    SignalAction,
    StrategyType,
    Timeframe,
)


class Strategy(UUIDPrimaryKey, UserOwned, Timestamps, Base):
    __tablename__ = "strategies"
    __table_args__ = (
        UniqueConstraint("user_id", "name"),
        one_of("strategy_type", StrategyType),
        one_of("risk_level", RiskLevel),
        one_of("timeframe", Timeframe),
    )

    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    strategy_type: Mapped[str] = mapped_column(String(32))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    risk_level: Mapped[str] = mapped_column(String(16), default=RiskLevel.MEDIUM.value)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    performance_metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    backtest_results: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Where an active strategy computes its live signals: these symbols' closed candles
    # of this timeframe (none: it computes none, and only backtests run it).
    symbols: Mapped[list[str]] = mapped_column(JSONType, default=list, server_default="[]")
    timeframe: Mapped[str] = mapped_column(
        String(8), default=Timeframe.H1.value, server_default=Timeframe.H1.value
    )


class TradingSignal(UUIDPrimaryKey, UserOwnedComposite, CreatedAt, Base):
    """What an active strategy read from one closed candle of a symbol: the seed's
    `trading_signals` columns, plus the candle it was computed on (one signal per
    strategy, symbol, timeframe and candle, so recomputing one is harmless)."""

    __tablename__ = "trading_signals"
    __table_args__ = (
        UniqueConstraint("strategy_id", "symbol", "timeframe", "candle_open_time"),
        Index("ix_trading_signals_user_id_created_at", "user_id", "created_at"),
        Index("idx_signals_created", "created_at"),
        one_of("action", SignalAction),
        CheckConstraint(
            f"{num('strength')} >= 0 AND {num('strength')} <= 100", name="strength_range"
        ),
        unit_interval("confidence"),
        *positive("price"),
    )

    strategy_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("strategies.id", ondelete="CASCADE")
    )
    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    symbol: Mapped[str] = mapped_column(String(50))
    timeframe: Mapped[str] = mapped_column(String(8))
    candle_open_time: Mapped[datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(String(10))
    strength: Mapped[Decimal] = mapped_column(Money)
    price: Mapped[Decimal] = mapped_column(Money)
    confidence: Mapped[Decimal] = mapped_column(Money)
    reasoning: Mapped[str | None] = mapped_column(Text)
    # `metadata` is SQLAlchemy's own attribute on every model: the column keeps the seed's
    # name, the attribute another.
    signal_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)


class BacktestRun(UUIDPrimaryKey, UserOwnedComposite, CreatedAt, Base):
    """One backtest, of a strategy or of an agent: what was asked, how far it got and
    what it found. A run in the background is a job: queued, running, then succeeded,
    failed or cancelled."""

    __tablename__ = "backtest_runs"
    __table_args__ = (
        Index("ix_backtest_runs_user_id_created_at", "user_id", "created_at"),
        one_of("kind", BacktestKind),
        one_of("status", BacktestStatus),
        unit_interval("progress"),
        CheckConstraint(
            "(kind = 'strategy' AND strategy_id IS NOT NULL) "
            "OR (kind = 'agent' AND agent_id IS NOT NULL)",
            name="subject_matches_kind",
        ),
    )

    kind: Mapped[str] = mapped_column(String(16))
    strategy_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("strategies.id", ondelete="CASCADE"), index=True
    )
    agent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    request: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    progress: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    stage: Mapped[str | None] = mapped_column(String(32))
    # The run's summary (what ran, on which candles, the metrics): small, listed.
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Trades, the open position and the equity curve: read one run at a time.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
