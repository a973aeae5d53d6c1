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

The parts: valuation.py values an account, metrics.py computes the performance
measures, rebalance.py plans the rebalancing orders (pure), rebalancing.py shapes what
placing them did and names them; the queries are in database/repositories/portfolio.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import OrderBook
from core.config import Settings
from core.exceptions import AppError, NotFoundError, ValidationFailedError
from core.service_registry import ServiceHealth
from core.supervision import SupervisedTask
from database.locking import consistent_reads
from database.orm import Order, TradingAccount
from database.repositories import orders as order_repo
from database.repositories import portfolio as portfolio_repo
from database.repositories.accounts import find_account
from models.enums import OrderType
from models.events import Channel, EventType
from models.portfolio import (
    AccountMetricsRead,
    PerformancePeriod,
    PerformanceRead,
    PortfolioSnapshotRead,
    PortfolioSummaryRead,
    RebalanceOrderRead,
    RebalancePlanRead,
    RebalanceRequest,
)
from models.trading import OrderCreate, OrderRead, PaperPortfolioRead, PositionRead
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus
from services.paper_trading.booking import read_order
from services.paper_trading.fees import FeeSchedule
from services.portfolio import metrics
from services.portfolio.metrics import DEFAULT_CURVE_POINTS, SHARPE_WINDOW
from services.portfolio.rebalance import (
    Holding,
    PlannedOrder,
    Quote,
    plan_rebalance,
)
from services.portfolio.rebalancing import (
    RISK_REFUSED,
    Link,
    OrderCheck,
    checked,
    client_order_id,
    order_read,
    plan_prefix,
    plan_read,
    replayed_order,
)
from services.portfolio.valuation import MarketPrices, Valuation, value_at_mark
from utils import performance

__all__ = [
    "DAILY_WINDOW",
    "DEFAULT_CURVE_POINTS",
    "RISK_REFUSED",
    "SHARPE_WINDOW",
    "MarketPrices",
    "OrderCheck",
    "OrderPlacer",
    "PortfolioService",
    "Valuation",
]

log = structlog.get_logger(__name__)

DAILY_WINDOW = timedelta(days=1)
_ZERO = Decimal(0)


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

    def taker_book(self, symbol: str) -> OrderBook: ...


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
        self.fees = FeeSchedule(settings.paper.maker_fee_bps, settings.paper.taker_fee_bps)
        self._loop = SupervisedTask("portfolio_snapshots", self._run)
        # Highest snapshot equity per account, so drawdown is all-time without re-reading
        # every snapshot each round; filled from the table on first use.
        self._peaks: dict[uuid.UUID, Decimal] = {}
        self.snapshots_taken = 0
        self.snapshot_errors = 0
        self._last_round_at: datetime | None = None

    def forget_account(self, account_id: uuid.UUID) -> None:
        """An account's equity history was deleted (a reset): its peak is read anew."""
        self._peaks.pop(account_id, None)

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
            await consistent_reads(session)
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
            reference = await portfolio_repo.latest_snapshot_at_or_before(
                session, account.id, user_id=account.user_id, at=now - DAILY_WINDOW
            )
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
            last_snapshot_at = await portfolio_repo.last_snapshot_at(
                session, account.id, user_id=account.user_id
            )
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
        return await value_at_mark(session, account, self._market)

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
        end = metrics.as_utc(end) if end is not None else datetime.now(UTC)
        start = metrics.as_utc(start) if start is not None else None
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
            snapshots = await portfolio_repo.snapshots_between(
                session, account.id, user_id=account.user_id, start=start, end=end
            )
            closed = await metrics.closed_trade_results(
                session, account.id, user_id=account.user_id, start=start, end=end
            )
        return metrics.performance_read(
            account.id, period, start, end, snapshots, closed, max_points
        )

    # --- snapshots -----------------------------------------------------------------------

    async def snapshot_account(self, account_id: uuid.UUID) -> PortfolioSnapshotRead:
        """Record the account's valuation now and update its max drawdown and Sharpe."""
        now = datetime.now(UTC)
        async with self._database.database.transaction() as session:
            # Internal (the snapshot loop spans users). Orders lock the account first:
            # holding it, the reads below see no fill half-way.
            account = await portfolio_repo.lock_account_for_snapshot(session, account_id)
            if account is None:
                raise NotFoundError(
                    f"account {account_id} not found", details={"account_id": str(account_id)}
                )
            valued = await self.value_account(session, account)
            row = await portfolio_repo.add_snapshot(
                session,
                account.id,
                user_id=account.user_id,
                equity=valued.equity,
                cash=valued.cash,
                positions_value=valued.positions_value,
                realized_pnl=valued.realized_pnl,
                unrealized_pnl=valued.unrealized_pnl,
                fees=valued.fees,
                taken_at=now,
            )
            peak, drawdown = await self._drawdown(session, account, valued.equity)
            account.max_drawdown = max(account.max_drawdown, drawdown)
            account.sharpe_ratio = await metrics.trailing_sharpe(
                session, account.id, user_id=account.user_id, now=now
            )
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
            # Internal: the round spans every user's accounts.
            account_ids = await portfolio_repo.active_account_ids(session)
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
        self, session: AsyncSession, account: TradingAccount, equity: Decimal
    ) -> tuple[Decimal, Decimal]:
        """(all-time peak, drawdown) with the snapshot just added; a peak not yet known
        is read from every snapshot, and so is the drawdown of that whole history."""
        peak = self._peaks.get(account.id)
        if peak is None:
            history = await portfolio_repo.equity_history(
                session, account.id, user_id=account.user_id
            )
            return max(history), performance.max_drawdown(history)
        peak = max(peak, equity)
        return peak, (peak - equity) / peak if peak > 0 else _ZERO

    # --- rebalancing ---------------------------------------------------------------------

    async def rebalance(
        self,
        user_id: uuid.UUID,
        request: RebalanceRequest,
        *,
        idempotency_key: str | None = None,
        decision_id: uuid.UUID | None = None,
        check: OrderCheck | None = None,
    ) -> RebalancePlanRead:
        """Market orders from the holdings to the target weights: sells, then buys. A
        dry run returns the plan only. Orders are placed one by one (no all-or-nothing):
        each reports placed or failed, with the reason. They carry the account's agent
        and `decision_id` (the agent decision that asked for it). With a `check`, each
        order is placed only if it passes (in order, told what the earlier ones did);
        a refused one is reported skipped (`risk_refused`), with the reasons.

        With an `idempotency_key` the plan's id is derived from it (per user and
        account) and each order's client_order_id from the plan and its symbol: a
        retry finds the orders the first run placed and returns them (`replayed`)
        instead of rebalancing a second time, and a retry racing the first places no
        symbol's order twice."""
        async with self._read() as session:
            account = await find_account(session, user_id, request.account_id)
            valued = await self.value_account(session, account)
            plan_id = uuid.uuid4()
            earlier: list[Order] = []
            if idempotency_key is not None:
                plan_id = uuid.uuid5(_PLAN_NAMESPACE, f"{user_id}/{account.id}/{idempotency_key}")
                if not request.dry_run:
                    earlier = await order_repo.with_client_prefix(
                        session, account.id, plan_prefix(plan_id)
                    )
        targets = self._resolve_targets(request, account.base_currency)
        free = {b.asset: b.free for b in valued.balances}
        held = {p.symbol for p in valued.positions}
        rules = {s: self._market.pair_rules(s) for s in {*targets, *held}}
        holdings = {
            p.symbol: Holding(p.quantity, free.get(rules[p.symbol].base_asset, _ZERO))
            for p in valued.positions
        }
        quotes = {s: self._quote(s) for s in rules}
        try:
            plan = plan_rebalance(
                cash=valued.cash,
                free_cash=valued.free_cash,
                holdings=holdings,
                targets=targets,
                quotes=quotes,
                rules=rules,
                fee_bps={s: self.fees.rates(account, rules[s]).taker_bps for s in rules},
            )
        except ValueError as e:
            raise ValidationFailedError(str(e), code="cannot_rebalance") from e
        if earlier:
            log.info("portfolio_rebalance_replayed", plan_id=str(plan_id), orders=len(earlier))
            replay = [replayed_order(read_order(row, [])) for row in earlier]
            read = plan_read(plan_id, account.id, False, plan, targets, replay)
            read.replayed = True
            return read
        link = Link(account.agent_id, decision_id, check)
        if request.dry_run:
            orders = [
                checked(planned, link) or order_read(planned, None) for planned in plan.orders
            ]
        else:
            orders = [
                await self._execute(user_id, account.id, plan_id, planned, link)
                for planned in plan.orders
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
        # The book the orders will walk, as paper orders have left it.
        book = self._orders.taker_book(symbol)
        return Quote(mark=mark, bid=ticker.bid, ask=ticker.ask, bids=book.bids, asks=book.asks)

    async def _execute(
        self,
        user_id: uuid.UUID,
        account_id: uuid.UUID,
        plan_id: uuid.UUID,
        planned: PlannedOrder,
        link: Link,
    ) -> RebalanceOrderRead:
        if planned.skipped:
            return order_read(planned, None)
        refused = checked(planned, link, placing=True)
        if refused is not None:
            return refused
        request = OrderCreate(
            symbol=planned.symbol,
            side=planned.side,
            order_type=OrderType.MARKET,
            quantity=planned.quantity,
            account_id=account_id,
            # Idempotent per plan and symbol: a retried placement returns the same order.
            client_order_id=client_order_id(plan_id, planned.symbol),
            strategy="rebalance",
        )
        try:
            order = await self._orders.place_order(
                user_id, request, agent_id=link.agent_id, decision_id=link.decision_id
            )
        except AppError as e:
            log.warning("rebalance_order_failed", plan_id=str(plan_id), code=e.code)
            return order_read(planned, None, failure=e)
        if link.check is not None:
            link.check.placed(planned, order)
        return order_read(planned, order)


_PLAN_NAMESPACE = uuid.UUID("6f1d4c2e-0a9b-5b7e-9c1d-3e5f7a9b1c2d")
