"""The portfolio: accounts valued at the mark, their performance, periodic snapshots, and
rebalancing to target weights.

Valuation (the paper ledger's definitions): cash is the account's balance of its base
currency, free plus locked; a position is worth `quantity * mark` and cost
`cost_basis`; equity is cash plus positions; unrealized PnL is positions' worth minus
cost; total PnL is realized plus unrealized minus fees. A position whose symbol has no
mark is valued at cost (no unrealized PnL) and shows a null mark. Balances of other
assets are the positions' own holdings and are not counted twice.

Daily PnL is equity now minus the equity of the latest snapshot taken at least 24 hours
ago, or minus the initial balance when the account has no snapshot that old (it is
younger than a day, or snapshots were off).

Every `snapshot_interval_seconds` a supervised loop snapshots every active account of
every user, updates the account's `max_drawdown` (all-time, against the highest
snapshot) and `sharpe_ratio` (over the last 30 days of snapshots), and publishes a
`portfolio_update` on the `portfolio` channel.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import PairRules, Ticker
from core.config import Settings
from core.exceptions import AppError, NotFoundError, ValidationFailedError
from core.service_registry import ServiceHealth
from core.supervision import SupervisedTask
from database.orm import PortfolioSnapshot, Position, Trade, TradingAccount
from database.repositories.accounts import balances_of, find_account
from models.enums import OrderSide, OrderType
from models.events import Channel, EventType
from models.portfolio import (
    AccountMetricsRead,
    EquityPoint,
    PerformancePeriod,
    PerformanceRead,
    PortfolioSnapshotRead,
    PortfolioSummaryRead,
    RebalanceOrderRead,
    RebalancePlanRead,
    RebalanceRequest,
)
from models.trading import (
    AccountRead,
    BalanceRead,
    OrderCreate,
    OrderRead,
    PaperPortfolioRead,
    PositionRead,
)
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus
from services.portfolio.rebalance import (
    Holding,
    PlannedOrder,
    Quote,
    order_read,
    plan_read,
    plan_rebalance,
)
from utils import performance

log = structlog.get_logger(__name__)

SHARPE_WINDOW = timedelta(days=30)
DAILY_WINDOW = timedelta(days=1)
DEFAULT_CURVE_POINTS = 500
# Sharpe is an estimate: six decimals are plenty, and keep it inside the NUMERIC column.
_SHARPE_QUANTUM = Decimal("0.000001")
_MAX_STORED_SHARPE = 1e12
_ZERO = Decimal(0)


class MarketPrices(Protocol):
    """What the portfolio needs from the market data service."""

    def mark_price(self, symbol: str) -> Decimal | None: ...

    def resolve_symbol(self, raw: str) -> str: ...

    def pair_rules(self, symbol: str) -> PairRules: ...

    def ticker(self, symbol: str) -> Ticker: ...


class OrderPlacer(Protocol):
    """What rebalancing needs from the paper trading service."""

    async def place_order(
        self,
        user_id: uuid.UUID,
        request: OrderCreate,
        *,
        agent_id: uuid.UUID | None = None,
        decision_id: uuid.UUID | None = None,
    ) -> OrderRead: ...


@dataclass(frozen=True, slots=True)
class Valuation:
    account: AccountRead
    balances: list[BalanceRead]
    positions: list[PositionRead]
    cash: Decimal
    free_cash: Decimal
    positions_value: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees: Decimal

    @property
    def equity(self) -> Decimal:
        return self.cash + self.positions_value

    @property
    def total_pnl(self) -> Decimal:
        return self.realized_pnl + self.unrealized_pnl - self.fees


class PortfolioService:
    def __init__(
        self,
        database: DatabaseService,
        market_data: MarketPrices,
        paper_trading: OrderPlacer,
        event_bus: EventBus,
        settings: Settings,
    ) -> None:
        self._database = database
        self._market = market_data
        self._orders = paper_trading
        self._event_bus = event_bus
        self._interval = settings.paper.snapshot_interval_seconds
        self._loop = SupervisedTask("portfolio_snapshots", self._run)
        # Highest snapshot equity per account, so drawdown is all-time without re-reading
        # every snapshot each round; filled from the table on first use.
        self._peaks: dict[uuid.UUID, Decimal] = {}
        self.snapshots_taken = 0
        self.snapshot_errors = 0
        self._last_round_at: datetime | None = None

    async def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def health(self) -> ServiceHealth:
        data = {
            "snapshots_taken": self.snapshots_taken,
            "snapshot_errors": self.snapshot_errors,
            "loop_crashes": self._loop.crashes,
            "last_round_at": self._last_round_at.isoformat() if self._last_round_at else None,
        }
        if not self._loop.running:
            return ServiceHealth.degraded(
                "snapshot loop not running", **data, last_error=self._loop.last_error
            )
        return ServiceHealth.healthy(f"snapshots every {self._interval:g}s", **data)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncSession]:
        """A read whose queries all see one committed state. SQLite's transactions do;
        PostgreSQL's READ COMMITTED would let a fill commit between the balances and the
        positions queries, so a valuation runs REPEATABLE READ there."""
        async with self._database.database.read() as session:
            if session.get_bind().dialect.name == "postgresql":
                await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    # --- valuation -----------------------------------------------------------------------

    async def account_portfolio(
        self, user_id: uuid.UUID, *, account_id: uuid.UUID | None = None
    ) -> PaperPortfolioRead:
        """The account's balances and open positions marked to the latest price."""
        async with self._read() as session:
            account = await find_account(session, user_id, account_id)
            valuation = await self.value_account(session, account)
        return PaperPortfolioRead.model_validate(valuation)

    async def positions(
        self, user_id: uuid.UUID, *, account_id: uuid.UUID | None = None
    ) -> list[PositionRead]:
        """Open positions (quantity > 0) by symbol, marked to the latest price."""
        async with self._read() as session:
            account = await find_account(session, user_id, account_id)
            return (await self.value_account(session, account)).positions

    async def summary(
        self, user_id: uuid.UUID, *, account_id: uuid.UUID | None = None
    ) -> PortfolioSummaryRead:
        """Equity, cash, PnL and the PnL since the snapshot of about a day ago."""
        now = datetime.now(UTC)
        async with self._read() as session:
            account = await find_account(session, user_id, account_id)
            valuation = await self.value_account(session, account)
            query = (
                select(PortfolioSnapshot.equity, PortfolioSnapshot.taken_at)
                .where(
                    PortfolioSnapshot.account_id == account.id,
                    PortfolioSnapshot.taken_at <= now - DAILY_WINDOW,
                )
                .order_by(PortfolioSnapshot.taken_at.desc())
                .limit(1)
            )
            reference = (await session.execute(query)).one_or_none()
        reference_equity, reference_at = reference or (account.initial_balance, None)
        return PortfolioSummaryRead(
            account_id=account.id,
            account_name=account.account_name,
            base_currency=account.base_currency,
            as_of=now,
            equity=valuation.equity,
            cash=valuation.cash,
            positions_value=valuation.positions_value,
            positions_count=len(valuation.positions),
            initial_balance=account.initial_balance,
            realized_pnl=valuation.realized_pnl,
            unrealized_pnl=valuation.unrealized_pnl,
            fees=valuation.fees,
            total_pnl=valuation.total_pnl,
            daily_pnl=valuation.equity - reference_equity,
            daily_reference_at=reference_at,
        )

    async def metrics(
        self, user_id: uuid.UUID, *, account_id: uuid.UUID | None = None
    ) -> AccountMetricsRead:
        """The account's PnL and trade counts, with drawdown and Sharpe from its snapshots."""
        async with self._read() as session:
            account = await find_account(session, user_id, account_id)
            valuation = await self.value_account(session, account)
            query = select(PortfolioSnapshot.taken_at).where(
                PortfolioSnapshot.account_id == account.id
            )
            last_snapshot_at = (
                await session.execute(query.order_by(PortfolioSnapshot.taken_at.desc()).limit(1))
            ).scalar_one_or_none()
        return AccountMetricsRead(
            account_id=account.id,
            equity=valuation.equity,
            initial_balance=account.initial_balance,
            realized_pnl=valuation.realized_pnl,
            unrealized_pnl=valuation.unrealized_pnl,
            fees=valuation.fees,
            total_pnl=valuation.total_pnl,
            total_trades=account.total_trades,
            winning_trades=account.winning_trades,
            losing_trades=account.losing_trades,
            win_rate=performance.win_rate(account.winning_trades, account.total_trades),
            max_drawdown=account.max_drawdown,
            sharpe_ratio=account.sharpe_ratio,
            last_snapshot_at=last_snapshot_at,
        )

    async def value_account(self, session: AsyncSession, account: TradingAccount) -> Valuation:
        """The account's balances and open positions marked to the latest price (a
        position without a price counts at cost), read in the caller's session."""
        balances = await balances_of(session, account.id)
        query = select(Position).where(Position.account_id == account.id).order_by(Position.symbol)
        # Money is compared in Python: SQLite stores it as text (database/orm/types.py).
        held = [p for p in (await session.execute(query)).scalars() if p.quantity > 0]
        positions = [self._mark(p) for p in held]
        cash = sum((b.free + b.locked for b in balances if b.asset == account.base_currency), _ZERO)
        free_cash = sum((b.free for b in balances if b.asset == account.base_currency), _ZERO)
        return Valuation(
            account=AccountRead.model_validate(account),
            balances=[BalanceRead.model_validate(b) for b in balances],
            positions=positions,
            cash=cash,
            free_cash=free_cash,
            positions_value=sum(
                (p.market_value if p.market_value is not None else p.cost_basis for p in positions),
                _ZERO,
            ),
            realized_pnl=account.realized_pnl,
            unrealized_pnl=sum((p.unrealized_pnl or _ZERO for p in positions), _ZERO),
            fees=account.total_fees,
        )

    def _mark(self, position: Position) -> PositionRead:
        mark = self._market.mark_price(position.symbol)
        value = None if mark is None else position.quantity * mark
        return PositionRead(
            symbol=position.symbol,
            quantity=position.quantity,
            avg_price=position.avg_price,
            cost_basis=position.cost_basis,
            mark_price=mark,
            market_value=value,
            unrealized_pnl=None if value is None else value - position.cost_basis,
            realized_pnl=position.realized_pnl,
            last_trade_at=position.last_trade_at,
        )

    # --- performance ---------------------------------------------------------------------

    async def performance(
        self,
        user_id: uuid.UUID,
        *,
        account_id: uuid.UUID | None = None,
        period: PerformancePeriod | None = PerformancePeriod.MONTH,
        start: datetime | None = None,
        end: datetime | None = None,
        max_points: int = DEFAULT_CURVE_POINTS,
    ) -> PerformanceRead:
        """Equity curve and risk/return measures over [start, end]; explicit bounds win
        over `period`, which reaches back from `end` (now by default)."""
        if max_points < 2:
            raise ValueError("max_points must be >= 2")
        end = _as_utc(end) if end is not None else datetime.now(UTC)
        start = _as_utc(start) if start is not None else None
        if start is not None:
            period = None
        elif period is not None and period.length is not None:
            start = end - period.length
        if start is not None and start > end:
            raise ValidationFailedError(
                "start is after end", details={"start": start.isoformat(), "end": end.isoformat()}
            )
        async with self._read() as session:
            account = await find_account(session, user_id, account_id)
            snapshots = await _snapshots(session, account.id, start=start, end=end)
            closed = await _closed_trade_results(session, account.id, start=start, end=end)
        return _performance(account.id, period, start, end, snapshots, closed, max_points)

    # --- snapshots -----------------------------------------------------------------------

    async def snapshot_account(self, account_id: uuid.UUID) -> PortfolioSnapshotRead:
        """Record the account's valuation now and update its max drawdown and Sharpe."""
        now = datetime.now(UTC)
        async with self._database.database.transaction() as session:
            query = select(TradingAccount).where(TradingAccount.id == account_id)
            if session.get_bind().dialect.name == "postgresql":
                # Orders lock the account first: holding it, the reads below see no fill
                # half-way (the new position with the cash from before it).
                query = query.with_for_update()
            account = (await session.execute(query)).scalar_one_or_none()
            if account is None:
                raise NotFoundError(
                    f"account {account_id} not found", details={"account_id": str(account_id)}
                )
            valuation = await self.value_account(session, account)
            row = PortfolioSnapshot(
                user_id=account.user_id,
                account_id=account.id,
                equity=valuation.equity,
                cash=valuation.cash,
                positions_value=valuation.positions_value,
                realized_pnl=valuation.realized_pnl,
                unrealized_pnl=valuation.unrealized_pnl,
                fees=valuation.fees,
                taken_at=now,
            )
            session.add(row)
            await session.flush()
            peak, drawdown = await self._drawdown(session, account.id, valuation.equity)
            account.max_drawdown = max(account.max_drawdown, drawdown)
            account.sharpe_ratio = await _trailing_sharpe(session, account.id, now)
            snapshot = PortfolioSnapshotRead.model_validate(row)
            user_id = account.user_id
        self._peaks[account_id] = peak
        self.snapshots_taken += 1
        await self._event_bus.publish(
            Channel.PORTFOLIO,
            EventType.PORTFOLIO_UPDATE,
            {"kind": "snapshot", **snapshot.model_dump(mode="json")},
            user_id=user_id,
        )
        return snapshot

    async def snapshot_all(self) -> int:
        """Snapshot every active account of every user; returns how many were taken.

        One account failing is logged and counted; the others are still snapshotted.
        """
        async with self._database.database.read() as session:
            query = (
                select(TradingAccount.id)
                .where(TradingAccount.is_active.is_(True))
                .order_by(TradingAccount.created_at, TradingAccount.id)
            )
            account_ids = list((await session.execute(query)).scalars())
        taken = 0
        for account_id in account_ids:
            try:
                await self.snapshot_account(account_id)
                taken += 1
            except Exception:
                self.snapshot_errors += 1
                log.exception("portfolio_snapshot_failed", account_id=str(account_id))
        self._last_round_at = datetime.now(UTC)
        return taken

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.snapshot_all()

    async def _drawdown(
        self, session: AsyncSession, account_id: uuid.UUID, equity: Decimal
    ) -> tuple[Decimal, Decimal]:
        """(all-time peak, drawdown) with the snapshot just added; a peak not yet known
        is read from every snapshot, and so is the drawdown of that whole history."""
        peak = self._peaks.get(account_id)
        if peak is None:
            query = (
                select(PortfolioSnapshot.equity)
                .where(PortfolioSnapshot.account_id == account_id)
                .order_by(PortfolioSnapshot.taken_at, PortfolioSnapshot.id)
            )
            history = list((await session.execute(query)).scalars())
            return max(history), performance.max_drawdown(history)
        peak = max(peak, equity)
        return peak, (peak - equity) / peak if peak > 0 else _ZERO

    # --- rebalancing ---------------------------------------------------------------------

    async def rebalance(self, user_id: uuid.UUID, request: RebalanceRequest) -> RebalancePlanRead:
        """Market orders from the holdings to the target weights: sells, then buys. A
        dry run returns the plan only. Orders are placed one by one (no all-or-nothing):
        each reports placed or failed, with the reason."""
        async with self._read() as session:
            account = await find_account(session, user_id, request.account_id)
            valuation = await self.value_account(session, account)
        targets = self._resolve_targets(request, account.base_currency)
        free = {b.asset: b.free for b in valuation.balances}
        held = {p.symbol for p in valuation.positions}
        rules = {s: self._market.pair_rules(s) for s in {*targets, *held}}
        holdings = {
            p.symbol: Holding(p.quantity, free.get(rules[p.symbol].base_asset, _ZERO))
            for p in valuation.positions
        }
        quotes = {s: self._quote(s) for s in rules}
        try:
            plan = plan_rebalance(
                cash=valuation.cash,
                free_cash=valuation.free_cash,
                holdings=holdings,
                targets=targets,
                quotes=quotes,
                rules=rules,
                fee_bps=account.taker_fee_bps,
            )
        except ValueError as e:
            raise ValidationFailedError(str(e), code="cannot_rebalance") from e
        plan_id = uuid.uuid4()
        if request.dry_run:
            orders = [order_read(o, None) for o in plan.orders]
        else:
            orders = [
                await self._execute(user_id, account.id, plan_id, index, planned)
                for index, planned in enumerate(plan.orders)
            ]
        log.info(
            "portfolio_rebalanced",
            account_id=str(account.id),
            plan_id=str(plan_id),
            dry_run=request.dry_run,
            orders=len(orders),
        )
        return plan_read(plan_id, account.id, request.dry_run, plan, targets, orders)

    def _resolve_targets(self, request: RebalanceRequest, currency: str) -> dict[str, Decimal]:
        """Canonical symbol -> weight; unknown symbols are 404, other quotes are 422."""
        targets: dict[str, Decimal] = {}
        for target in request.targets:
            symbol = self._market.resolve_symbol(target.symbol)
            if symbol in targets:
                raise ValidationFailedError(
                    f"{symbol} is named more than once", details={"symbol": symbol}
                )
            quote_asset = self._market.pair_rules(symbol).quote_asset
            if quote_asset != currency:
                raise ValidationFailedError(
                    f"{symbol} is quoted in {quote_asset}, the account in {currency}",
                    details={"symbol": symbol, "quote_asset": quote_asset, "currency": currency},
                )
            targets[symbol] = target.weight
        return targets

    def _quote(self, symbol: str) -> Quote:
        mark = self._market.mark_price(symbol)
        if mark is None or mark <= 0:
            raise ValidationFailedError(
                f"no market price for {symbol}", code="no_market_price", details={"symbol": symbol}
            )
        ticker = self._market.ticker(symbol)
        return Quote(mark=mark, bid=ticker.bid, ask=ticker.ask)

    async def _execute(
        self,
        user_id: uuid.UUID,
        account_id: uuid.UUID,
        plan_id: uuid.UUID,
        index: int,
        planned: PlannedOrder,
    ) -> RebalanceOrderRead:
        if planned.skipped:
            return order_read(planned, None)
        request = OrderCreate(
            symbol=planned.symbol,
            side=planned.side,
            order_type=OrderType.MARKET,
            quantity=planned.quantity,
            account_id=account_id,
            # Idempotent per plan: a retried placement returns the same order.
            client_order_id=f"rebalance-{plan_id.hex}-{index}",
            strategy="rebalance",
        )
        try:
            order = await self._orders.place_order(user_id, request)
        except AppError as e:
            log.warning("rebalance_order_failed", plan_id=str(plan_id), code=e.code)
            return order_read(planned, None, failure=e)
        return order_read(planned, order)


def _as_utc(moment: datetime) -> datetime:
    """A bound without a zone is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def _snapshots(
    session: AsyncSession, account_id: uuid.UUID, *, start: datetime | None, end: datetime
) -> list[PortfolioSnapshot]:
    query = select(PortfolioSnapshot).where(
        PortfolioSnapshot.account_id == account_id, PortfolioSnapshot.taken_at <= end
    )
    if start is not None:
        query = query.where(PortfolioSnapshot.taken_at >= start)
    query = query.order_by(PortfolioSnapshot.taken_at, PortfolioSnapshot.id)
    return list((await session.execute(query)).scalars())


async def _closed_trade_results(
    session: AsyncSession, account_id: uuid.UUID, *, start: datetime | None, end: datetime
) -> list[Decimal]:
    """Net result (realized PnL minus fee) of each fill that reduced a position: on a
    spot, long-only account, every sell."""
    query = select(Trade.realized_pnl, Trade.fee).where(
        Trade.account_id == account_id,
        Trade.side == OrderSide.SELL.value,
        Trade.executed_at <= end,
    )
    if start is not None:
        query = query.where(Trade.executed_at >= start)
    return [pnl - fee for pnl, fee in (await session.execute(query)).all()]


async def _trailing_sharpe(
    session: AsyncSession, account_id: uuid.UUID, now: datetime
) -> Decimal | None:
    query = (
        select(PortfolioSnapshot.taken_at, PortfolioSnapshot.equity)
        .where(
            PortfolioSnapshot.account_id == account_id,
            PortfolioSnapshot.taken_at >= now - SHARPE_WINDOW,
        )
        .order_by(PortfolioSnapshot.taken_at, PortfolioSnapshot.id)
    )
    rows = (await session.execute(query)).all()
    periods = performance.periods_per_year([taken_at for taken_at, _ in rows])
    if periods is None:
        return None
    sharpe = performance.sharpe_ratio(
        performance.simple_returns([equity for _, equity in rows]), periods
    )
    if sharpe is None or not math.isfinite(sharpe) or abs(sharpe) >= _MAX_STORED_SHARPE:
        return None
    return Decimal(repr(sharpe)).quantize(_SHARPE_QUANTUM)


def _performance(
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
