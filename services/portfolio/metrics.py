"""Performance measures from an account's snapshots and closed trades: the equity curve
with its drawdowns, returns, volatility, Sharpe and Sortino, and the trailing Sharpe
stored on the account."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from database.orm import PortfolioSnapshot
from database.repositories import portfolio as portfolio_repo
from models.portfolio import EquityPoint, PerformancePeriod, PerformanceRead
from utils import performance

SHARPE_WINDOW = timedelta(days=30)
DEFAULT_CURVE_POINTS = 500
# Sharpe is an estimate: six decimals are plenty, and keep it inside the NUMERIC column.
_SHARPE_QUANTUM = Decimal("0.000001")
_MAX_STORED_SHARPE = 1e12
_ZERO = Decimal(0)


def as_utc(moment: datetime) -> datetime:
    """A bound without a zone is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def closed_trade_results(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    user_id: uuid.UUID,
    start: datetime | None,
    end: datetime,
) -> list[Decimal]:
    """Net result (realized PnL minus fee) of each fill that reduced a position: on a
    spot, long-only account, every sell."""
    results = await portfolio_repo.sell_results(
        session, account_id, user_id=user_id, start=start, end=end
    )
    return [pnl - fee for pnl, fee in results]


async def trailing_sharpe(
    session: AsyncSession, account_id: uuid.UUID, *, user_id: uuid.UUID, now: datetime
) -> Decimal | None:
    """The Sharpe ratio of the snapshots of the last SHARPE_WINDOW, as stored."""
    rows = await portfolio_repo.equity_since(
        session, account_id, user_id=user_id, since=now - SHARPE_WINDOW
    )
    periods = performance.periods_per_year([taken_at for taken_at, _ in rows])
    if periods is None:
        return None
    sharpe = performance.sharpe_ratio(
        performance.simple_returns([equity for _, equity in rows]), periods
    )
    if sharpe is None or not math.isfinite(sharpe) or abs(sharpe) >= _MAX_STORED_SHARPE:
        return None
    return Decimal(repr(sharpe)).quantize(_SHARPE_QUANTUM)


def performance_read(
    account_id: uuid.UUID,
    period: PerformancePeriod | None,
    start: datetime | None,
    end: datetime,
    snapshots: Sequence[PortfolioSnapshot],
    closed: Sequence[Decimal],
    max_points: int,
) -> PerformanceRead:
    equity = [s.equity for s in snapshots]
    drawdowns = performance.drawdowns(equity)
    returns = performance.simple_returns(equity)
    periods = performance.periods_per_year([s.taken_at for s in snapshots])
    # Thin the curve evenly to at most max_points, keeping the first and the last point.
    last = len(snapshots) - 1
    stride = math.ceil(last / (max_points - 1)) if len(snapshots) > max_points else 1
    kept = [i for i in range(len(snapshots)) if i % stride == 0 or i == last]
    curve = [
        EquityPoint(
            taken_at=snapshots[i].taken_at,
            equity=snapshots[i].equity,
            cash=snapshots[i].cash,
            positions_value=snapshots[i].positions_value,
            drawdown=drawdowns[i],
        )
        for i in kept
    ]
    winning = sum(1 for r in closed if r > 0)
    return PerformanceRead(
        account_id=account_id,
        period=period,
        start=start,
        end=end,
        snapshots=len(snapshots),
        curve=curve,
        start_equity=equity[0] if equity else None,
        end_equity=equity[-1] if equity else None,
        pnl=equity[-1] - equity[0] if equity else None,
        total_return=performance.total_return(equity),
        max_drawdown=max(drawdowns, default=_ZERO),
        periods_per_year=periods,
        volatility=None if periods is None else performance.volatility(returns, periods),
        sharpe_ratio=None if periods is None else performance.sharpe_ratio(returns, periods),
        sortino_ratio=None if periods is None else performance.sortino_ratio(returns, periods),
        closed_trades=len(closed),
        winning_trades=winning,
        losing_trades=sum(1 for r in closed if r < 0),
        win_rate=performance.win_rate(winning, len(closed)),
        profit_factor=performance.profit_factor(closed),
    )
