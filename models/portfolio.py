"""The portfolio as the API shows it: valuation, performance, metrics and rebalancing.

Money and ratios of money (returns, drawdown, win rate, profit factor) are decimal
strings; the return-series statistics (volatility, Sharpe, Sortino) are JSON numbers.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, model_validator

from models.base import AppModel, DecimalStr, InputModel
from models.enums import OrderSide
from models.trading import OrderRead

Weight = Annotated[DecimalStr, Field(ge=0, le=1, allow_inf_nan=False)]


class PerformancePeriod(StrEnum):
    DAY = "1d"
    WEEK = "7d"
    MONTH = "30d"
    QUARTER = "90d"
    ALL = "all"

    @property
    def length(self) -> timedelta | None:
        """How far back the period reaches; None for all of the history."""
        if self is PerformancePeriod.ALL:
            return None
        return timedelta(days=int(self.value.removesuffix("d")))


class PortfolioSummaryRead(AppModel):
    account_id: uuid.UUID
    account_name: str
    base_currency: str
    as_of: datetime
    equity: DecimalStr = Field(description="Cash plus positions at the mark.")
    cash: DecimalStr = Field(description="Free plus locked balance of the base currency.")
    positions_value: DecimalStr
    positions_count: int
    initial_balance: DecimalStr
    realized_pnl: DecimalStr = Field(description="Gross of fees.")
    unrealized_pnl: DecimalStr
    fees: DecimalStr
    total_pnl: DecimalStr = Field(description="Realized plus unrealized, minus fees.")
    daily_pnl: DecimalStr = Field(
        description=(
            "Equity now minus the equity of the latest snapshot taken at least 24 h ago, "
            "or minus the initial balance when there is none."
        )
    )
    daily_reference_at: datetime | None = Field(
        description="When the snapshot daily_pnl compares with was taken; null: initial."
    )


class PortfolioSnapshotRead(AppModel):
    id: uuid.UUID
    account_id: uuid.UUID
    equity: DecimalStr
    cash: DecimalStr
    positions_value: DecimalStr
    realized_pnl: DecimalStr
    unrealized_pnl: DecimalStr
    fees: DecimalStr
    taken_at: datetime


class EquityPoint(AppModel):
    taken_at: datetime
    equity: DecimalStr
    cash: DecimalStr
    positions_value: DecimalStr
    drawdown: DecimalStr = Field(description="Fall from the running peak, fraction of it.")


class PerformanceRead(AppModel):
    """Measures over the snapshots taken in [start, end] and the trades closed there."""

    account_id: uuid.UUID
    period: PerformancePeriod | None
    start: datetime | None
    end: datetime
    snapshots: int = Field(description="Snapshots in the period; `curve` may thin them.")
    curve: list[EquityPoint]
    start_equity: DecimalStr | None
    end_equity: DecimalStr | None
    pnl: DecimalStr | None = Field(description="End equity minus start equity.")
    total_return: DecimalStr | None
    max_drawdown: DecimalStr
    periods_per_year: float | None = Field(description="From the median snapshot spacing.")
    volatility: float | None = Field(description="Annualised.")
    sharpe_ratio: float | None = Field(description="Annualised, risk-free rate 0.")
    sortino_ratio: float | None = Field(description="Annualised, target return 0.")
    closed_trades: int = Field(description="Fills that reduced a position.")
    winning_trades: int
    losing_trades: int
    win_rate: DecimalStr | None
    profit_factor: DecimalStr | None = Field(
        description="Gross profit over gross loss of closed trades, net of fees."
    )


class AccountMetricsRead(AppModel):
    account_id: uuid.UUID
    equity: DecimalStr
    initial_balance: DecimalStr
    realized_pnl: DecimalStr
    unrealized_pnl: DecimalStr
    fees: DecimalStr
    total_pnl: DecimalStr
    total_trades: int
    winning_trades: int
    losing_trades: int
    win_rate: DecimalStr | None
    max_drawdown: DecimalStr = Field(description="From the periodic snapshots.")
    sharpe_ratio: DecimalStr | None = Field(description="Over the last 30 days of snapshots.")
    last_snapshot_at: datetime | None


class TargetWeight(InputModel):
    symbol: str = Field(min_length=1, max_length=32, examples=["BTC/USD"])
    weight: Weight = Field(description="Fraction of equity, 0 to 1.")


def _symbol_key(symbol: str) -> str:
    return symbol.upper().replace("-", "/")


class RebalanceRequest(InputModel):
    """Target weights of equity; the rest stays cash. Held symbols not named are sold."""

    targets: list[TargetWeight] = Field(min_length=1, max_length=100)
    account_id: uuid.UUID | None = None
    dry_run: bool = Field(default=False, description="Only return the plan, place nothing.")

    @model_validator(mode="after")
    def _weights_fit(self) -> Self:
        seen: set[str] = set()
        for target in self.targets:
            key = _symbol_key(target.symbol)
            if key in seen:
                raise ValueError(f"{target.symbol} is named more than once")
            seen.add(key)
        total = sum(t.weight for t in self.targets)
        if total > 1:
            raise ValueError(f"the weights sum to {total}, more than 1")
        return self


class RebalanceOrderStatus(StrEnum):
    PLANNED = "planned"
    SKIPPED = "skipped"
    PLACED = "placed"
    FAILED = "failed"


class AllocationRead(AppModel):
    symbol: str
    mark_price: DecimalStr
    current_quantity: DecimalStr
    current_value: DecimalStr
    current_weight: DecimalStr
    target_weight: DecimalStr
    target_value: DecimalStr
    target_quantity: DecimalStr


class RebalanceOrderRead(AppModel):
    symbol: str
    side: OrderSide
    quantity: DecimalStr
    expected_price: DecimalStr = Field(
        description="The average price walking the book (bids for a sell, asks for a buy); "
        "for a replayed plan, what the order paid."
    )
    expected_notional: DecimalStr
    status: RebalanceOrderStatus
    reason_code: str | None = None
    reason: str | None = None
    order: OrderRead | None = None


class RebalancePlanRead(AppModel):
    plan_id: uuid.UUID
    account_id: uuid.UUID
    dry_run: bool
    replayed: bool = Field(
        default=False,
        description="True when this Idempotency-Key already ran: the orders are the ones it "
        "placed then (nothing new is placed); allocations are as the account stands now.",
    )
    equity: DecimalStr
    cash: DecimalStr
    cash_weight: DecimalStr = Field(description="What the targets leave as cash.")
    allocations: list[AllocationRead]
    orders: list[RebalanceOrderRead] = Field(description="In execution order: sells first.")
