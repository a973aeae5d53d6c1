"""The portfolio service on each database: marks from a fake market (the network edge of
this service), orders to a recording fake, rows seeded with the factories."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update

from connectors.base import OrderBook, PairRules, Ticker
from core.config import Settings
from core.exceptions import InsufficientFundsError, NotFoundError, ValidationFailedError
from core.service_registry import HealthStatus
from database.connection import Database
from database.orm import AccountBalance, PortfolioSnapshot, Position, TradingAccount
from models.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from models.events import Event
from models.portfolio import PerformancePeriod, RebalanceOrderStatus, RebalanceRequest
from models.trading import OrderCreate, OrderRead
from services.infra.database import DatabaseService
from services.infra.event_bus import InProcessEventBus
from services.portfolio.service import PortfolioService
from tests.factories import create_account, create_order, create_position, create_trade, create_user
from utils import performance

D = Decimal
BTC, ETH, SOL = "BTC/USD", "ETH/USD", "SOL/USD"


class FakeMarket:
    """Marks set by the test; bid and ask one unit around the mark (a tenth for ETH)."""

    def __init__(self, marks: dict[str, str]) -> None:
        self.marks = {s: D(m) for s, m in marks.items()}
        self.rules = {
            symbol: PairRules(
                symbol=symbol,
                base_asset=symbol.split("/")[0],
                quote_asset=symbol.split("/")[1],
                tick_size=D("0.01"),
                step_size=D("0.001"),
                min_quantity=D("0.001"),
                max_quantity=D(1000),
                min_notional=D(10),
            )
            for symbol in (BTC, ETH, SOL, "ETH/EUR")
        }
        self.aliases = {"XBT/USD": BTC}

    def resolve_symbol(self, raw: str) -> str:
        symbol = raw.upper().replace("-", "/")
        symbol = self.aliases.get(symbol, symbol)
        if symbol not in self.rules:
            raise NotFoundError(f"unknown symbol {raw!r}")
        return symbol

    def mark_price(self, symbol: str) -> Decimal | None:
        return self.marks.get(symbol)

    def pair_rules(self, symbol: str) -> PairRules:
        return self.rules[self.resolve_symbol(symbol)]

    def ticker(self, symbol: str) -> Ticker:
        mark = self.marks[symbol]
        half = D("0.5") if symbol == ETH else D(1)
        now = datetime.now(UTC)
        return Ticker(symbol, mark - half, mark + half, mark, D(0), D(0), D(0), now)


@dataclass
class RecordingPlacer:
    """Accepts every order as filled, except symbols in `refuse`."""

    placed: list[OrderCreate] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    # Books the planner walks; a symbol without one is priced at the touch.
    books: dict[str, OrderBook] = field(default_factory=dict)

    def taker_book(self, symbol: str) -> OrderBook:
        return self.books.get(symbol, OrderBook(symbol, (), (), datetime.now(UTC)))

    async def place_order(
        self,
        user_id: uuid.UUID,
        request: OrderCreate,
        *,
        agent_id: uuid.UUID | None = None,
        decision_id: uuid.UUID | None = None,
    ) -> OrderRead:
        if request.symbol in self.refuse:
            raise InsufficientFundsError("not enough USD")
        self.placed.append(request)
        now = datetime.now(UTC)
        assert request.account_id is not None
        assert request.quantity is not None  # rebalancing orders by quantity
        return OrderRead(
            id=uuid.uuid4(),
            account_id=request.account_id,
            agent_id=None,
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            order_type=request.order_type,
            time_in_force=TimeInForce.GTC,
            quantity=request.quantity,
            price=None,
            stop_price=None,
            status=OrderStatus.FILLED,
            filled_quantity=request.quantity,
            average_price=None,
            fees=D(0),
            locked_amount=D(0),
            reject_reason=None,
            strategy=request.strategy,
            reasoning=None,
            created_at=now,
            updated_at=now,
            triggered_at=None,
            closed_at=now,
        )


@dataclass
class World:
    db: Database
    service: PortfolioService
    market: FakeMarket
    placer: RecordingPlacer
    events: list[Event]


@pytest.fixture
async def world(make_settings: Callable[..., Settings], database_url: str) -> AsyncIterator[World]:
    settings = make_settings(database={"url": database_url}, redis={"url": ""})
    database = DatabaseService(settings)
    await database.start()
    bus = InProcessEventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    market = FakeMarket({BTC: "180", ETH: "15", SOL: "10"})
    placer = RecordingPlacer()
    service = PortfolioService(database, market, placer, bus, settings)
    yield World(database.database, service, market, placer, events)
    await database.stop()


async def change(db: Database, model: Any, where: list[Any], **values: Any) -> None:
    async with db.transaction() as session:
        await session.execute(update(model).where(*where).values(**values))


async def hold(
    db: Database, account: TradingAccount, symbol: str, quantity: str, avg_price: str
) -> None:
    """A position at cost `quantity * avg_price` with its base asset held free."""
    await create_position(
        db, account=account, symbol=symbol, quantity=quantity, avg_price=avg_price
    )
    cost = D(quantity) * D(avg_price)
    await change(
        db,
        Position,
        [Position.account_id == account.id, Position.symbol == symbol],
        cost_basis=cost,
    )
    async with db.transaction() as session:
        session.add(
            AccountBalance(
                user_id=account.user_id,
                account_id=account.id,
                asset=symbol.split("/")[0],
                free=D(quantity),
            )
        )


async def ledger_account(db: Database) -> TradingAccount:
    """Initial 1000; realized +20, fees 5; 1 BTC at 150 and 10 ETH at 20 held, SOL closed;
    cash 665 (600 free, 65 locked) so that cash + cost = 1000 + 20 - 5."""
    user = await create_user(db)
    account = await create_account(db, user_id=user.id, cash="1000", is_default=True)
    await change(
        db,
        TradingAccount,
        [TradingAccount.id == account.id],
        realized_pnl=D(20),
        total_fees=D(5),
        total_trades=3,
        winning_trades=2,
        losing_trades=1,
    )
    await change(
        db,
        AccountBalance,
        [AccountBalance.account_id == account.id, AccountBalance.asset == "USD"],
        free=D(600),
        locked=D(65),
    )
    await hold(db, account, BTC, "1", "150")
    await hold(db, account, ETH, "10", "20")
    await create_position(db, account=account, symbol=SOL, quantity="0", avg_price="0")
    return account


async def add_snapshot(db: Database, account: TradingAccount, equity: str, at: datetime) -> None:
    async with db.transaction() as session:
        session.add(
            PortfolioSnapshot(
                user_id=account.user_id,
                account_id=account.id,
                equity=D(equity),
                cash=D(equity),
                positions_value=D(0),
                realized_pnl=D(0),
                unrealized_pnl=D(0),
                fees=D(0),
                taken_at=at,
            )
        )


async def reload(db: Database, account: TradingAccount) -> TradingAccount:
    async with db.read() as session:
        row = await session.get(TradingAccount, account.id)
        assert row is not None
        return row


class TestAccountPortfolio:
    async def test_values_open_positions_at_the_mark(self, world: World) -> None:
        account = await ledger_account(world.db)
        portfolio = await world.service.account_portfolio(account.user_id)
        assert (portfolio.cash, portfolio.positions_value, portfolio.equity) == (
            D(665),
            D(330),
            D(995),
        )
        assert (portfolio.realized_pnl, portfolio.unrealized_pnl, portfolio.fees) == (
            D(20),
            D(-20),
            D(5),
        )
        assert portfolio.total_pnl == -5 == portfolio.equity - account.initial_balance
        marked = [
            (p.symbol, p.mark_price, p.market_value, p.unrealized_pnl) for p in portfolio.positions
        ]
        assert marked == [(BTC, D(180), D(180), D(30)), (ETH, D(15), D(150), D(-50))]

    async def test_position_without_a_mark_is_valued_at_cost(self, world: World) -> None:
        account = await ledger_account(world.db)
        del world.market.marks[ETH]
        portfolio = await world.service.account_portfolio(account.user_id, account_id=account.id)
        eth = portfolio.positions[1]
        assert (eth.mark_price, eth.market_value, eth.unrealized_pnl) == (None, None, None)
        assert (portfolio.positions_value, portfolio.unrealized_pnl) == (D(380), D(30))

    async def test_positions_are_the_open_ones(self, world: World) -> None:
        account = await ledger_account(world.db)
        positions = await world.service.positions(account.user_id)
        assert [(p.symbol, p.quantity, p.cost_basis) for p in positions] == [
            (BTC, D(1), D(150)),
            (ETH, D(10), D(200)),
        ]

    async def test_another_users_account_is_not_found(self, world: World) -> None:
        account = await ledger_account(world.db)
        stranger = await create_user(world.db)
        with pytest.raises(NotFoundError):
            await world.service.summary(stranger.id, account_id=account.id)
        with pytest.raises(NotFoundError):
            await world.service.positions(stranger.id)


class TestSummary:
    async def test_daily_pnl_from_the_initial_balance_without_an_old_snapshot(
        self, world: World
    ) -> None:
        account = await ledger_account(world.db)
        await add_snapshot(world.db, account, "2000", datetime.now(UTC) - timedelta(hours=1))
        summary = await world.service.summary(account.user_id)
        assert (summary.equity, summary.total_pnl, summary.positions_count) == (D(995), D(-5), 2)
        assert (summary.daily_pnl, summary.daily_reference_at) == (D(-5), None)

    async def test_daily_pnl_from_the_latest_snapshot_a_day_old(self, world: World) -> None:
        account = await ledger_account(world.db)
        now = datetime.now(UTC)
        await add_snapshot(world.db, account, "900", now - timedelta(hours=30))
        await add_snapshot(world.db, account, "980", now - timedelta(hours=25))
        await add_snapshot(world.db, account, "2000", now - timedelta(hours=1))
        summary = await world.service.summary(account.user_id, account_id=account.id)
        assert summary.daily_pnl == 15
        assert summary.daily_reference_at == now - timedelta(hours=25)


class TestPerformance:
    async def seed(self, world: World) -> tuple[TradingAccount, datetime]:
        account = await ledger_account(world.db)
        now = datetime.now(UTC)
        await add_snapshot(world.db, account, "200", now - timedelta(days=3))
        for hours_ago, equity in zip([4, 3, 2, 1], ["100", "110", "99", "108.9"], strict=True):
            await add_snapshot(world.db, account, equity, now - timedelta(hours=hours_ago))
        sell = await create_order(world.db, account=account, side="sell", quantity="1")
        buy = await create_order(world.db, account=account, side="buy", quantity="1")
        for pnl, fee in [("30", "1"), ("-10", "1"), ("5", "5")]:
            await create_trade(world.db, order=sell, realized_pnl=pnl, fee=fee)
        await create_trade(world.db, order=buy, fee="1")
        await create_trade(
            world.db, order=sell, realized_pnl="99", executed_at=now - timedelta(days=3)
        )
        return account, now

    async def test_measures_over_the_last_day(self, world: World) -> None:
        account, _ = await self.seed(world)
        result = await world.service.performance(account.user_id, period=PerformancePeriod.DAY)
        assert (result.snapshots, result.start_equity, result.end_equity) == (4, D(100), D("108.9"))
        assert (result.pnl, result.total_return, result.max_drawdown) == (
            D("8.9"),
            D("0.089"),
            D("0.1"),
        )
        assert [p.drawdown for p in result.curve] == [0, 0, D("0.1"), D("0.01")]
        assert result.periods_per_year == pytest.approx(8760)
        # Returns 0.1, -0.1, 0.1: per period Sharpe 1/(2*sqrt(3)), Sortino 1/sqrt(3).
        assert result.sharpe_ratio == pytest.approx(8760**0.5 / (2 * 3**0.5), rel=1e-9)
        assert result.sortino_ratio == pytest.approx((8760 / 3) ** 0.5, rel=1e-9)
        # Sells net of fee: +29, -11 and 0; the buy is not a closed trade.
        assert (result.closed_trades, result.winning_trades, result.losing_trades) == (3, 1, 1)
        assert result.win_rate == D(1) / D(3)
        assert result.profit_factor == D(29) / D(11)

    async def test_longer_period_reaches_older_snapshots_and_trades(self, world: World) -> None:
        account, _ = await self.seed(world)
        result = await world.service.performance(account.user_id, period=PerformancePeriod.WEEK)
        assert (result.snapshots, result.max_drawdown, result.closed_trades) == (5, D("0.505"), 4)

    async def test_explicit_bounds_win_over_the_period(self, world: World) -> None:
        account, now = await self.seed(world)
        result = await world.service.performance(
            account.user_id,
            period=PerformancePeriod.ALL,
            start=now - timedelta(hours=3, minutes=30),
            end=now - timedelta(minutes=90),
        )
        assert result.period is None
        assert [p.equity for p in result.curve] == [110, 99]

    async def test_curve_is_thinned_keeping_the_last_point(self, world: World) -> None:
        account, _ = await self.seed(world)
        result = await world.service.performance(
            account.user_id, period=PerformancePeriod.ALL, max_points=3
        )
        assert result.snapshots == 5
        assert [p.equity for p in result.curve] == [200, 110, D("108.9")]

    async def test_no_snapshots_has_no_measures(self, world: World) -> None:
        account = await ledger_account(world.db)
        result = await world.service.performance(account.user_id)
        assert (result.snapshots, result.curve, result.total_return) == (0, [], None)
        assert (result.sharpe_ratio, result.win_rate, result.max_drawdown) == (None, None, D(0))

    async def test_start_after_end_is_refused(self, world: World) -> None:
        account = await ledger_account(world.db)
        now = datetime.now(UTC)
        with pytest.raises(ValidationFailedError):
            await world.service.performance(account.user_id, start=now, end=now - timedelta(1))


class TestSnapshots:
    async def test_records_the_valuation_and_publishes_it(self, world: World) -> None:
        account = await ledger_account(world.db)
        snapshot = await world.service.snapshot_account(account.id)
        assert (snapshot.equity, snapshot.cash, snapshot.positions_value) == (
            D(995),
            D(665),
            D(330),
        )
        assert (snapshot.realized_pnl, snapshot.unrealized_pnl, snapshot.fees) == (
            D(20),
            D(-20),
            D(5),
        )
        (event,) = world.events
        assert (event.channel, event.type, event.user_id) == (
            "portfolio",
            "portfolio_update",
            account.user_id,
        )
        async with world.db.read() as session:
            rows = (await session.execute(select(PortfolioSnapshot))).scalars().all()
        assert [(r.id, r.equity) for r in rows] == [(snapshot.id, D(995))]

    async def test_updates_max_drawdown_from_history_then_incrementally(self, world: World) -> None:
        account = await ledger_account(world.db)
        now = datetime.now(UTC)
        for hours_ago, equity in zip([4, 3, 2, 1], ["1000", "1100", "990", "1089"], strict=True):
            await add_snapshot(world.db, account, equity, now - timedelta(hours=hours_ago))
        await world.service.snapshot_account(account.id)
        assert (await reload(world.db, account)).max_drawdown == D("0.1")
        world.market.marks[BTC] = D(45)  # equity 665 + 45 + 150 = 860: 240 under 1100
        await world.service.snapshot_account(account.id)
        expected = (D(240) / D(1100)).quantize(D("1e-18"))
        assert (await reload(world.db, account)).max_drawdown == expected
        world.market.marks[BTC] = D(1000)
        await world.service.snapshot_account(account.id)
        assert (await reload(world.db, account)).max_drawdown == expected

    async def test_updates_sharpe_from_the_trailing_snapshots(self, world: World) -> None:
        account = await ledger_account(world.db)
        now = datetime.now(UTC)
        await add_snapshot(world.db, account, "5000", now - timedelta(days=40))
        for hours_ago, equity in zip([3, 2, 1], ["1000", "1100", "990"], strict=True):
            await add_snapshot(world.db, account, equity, now - timedelta(hours=hours_ago))
        await world.service.snapshot_account(account.id)
        returns = performance.simple_returns([D(1000), D(1100), D(990), D(995)])
        sharpe = performance.sharpe_ratio(returns, 8760)
        assert sharpe is not None
        stored = (await reload(world.db, account)).sharpe_ratio
        assert stored is not None
        assert float(stored) == pytest.approx(sharpe, abs=1e-6)

    async def test_snapshot_all_takes_every_active_account(self, world: World) -> None:
        first = await ledger_account(world.db)
        second = await create_account(world.db, cash="50")
        idle = await create_account(world.db, cash="70")
        await change(world.db, TradingAccount, [TradingAccount.id == idle.id], is_active=False)
        assert await world.service.snapshot_all() == 2
        async with world.db.read() as session:
            query = select(PortfolioSnapshot.account_id, PortfolioSnapshot.equity)
            rows = {tuple(row) for row in (await session.execute(query)).all()}
        assert rows == {(first.id, D(995)), (second.id, D(50))}
        assert world.service.snapshots_taken == 2

    async def test_unknown_account_is_not_found(self, world: World) -> None:
        with pytest.raises(NotFoundError):
            await world.service.snapshot_account(uuid.uuid4())


class TestSnapshotLoop:
    async def test_the_running_service_snapshots_on_its_interval(
        self, make_settings: Callable[..., Settings], database_url: str
    ) -> None:
        settings = make_settings(
            database={"url": database_url},
            redis={"url": ""},
            paper={"snapshot_interval_seconds": 0.01},
        )
        database = DatabaseService(settings)
        await database.start()
        account = await ledger_account(database.database)
        bus = InProcessEventBus()
        updates: asyncio.Queue[Event] = asyncio.Queue()
        bus.subscribe(updates.put_nowait)
        service = PortfolioService(database, FakeMarket({}), RecordingPlacer(), bus, settings)
        await service.start()
        try:
            event = await asyncio.wait_for(updates.get(), timeout=30)
            assert (event.type, event.user_id) == ("portfolio_update", account.user_id)
            assert (await service.health()).status is HealthStatus.HEALTHY
        finally:
            await service.stop()
            await database.stop()
        assert (await service.health()).status is HealthStatus.DEGRADED


async def rebalance_account(db: Database) -> TradingAccount:
    """Cash 800 and 2 BTC at 100, no fees: equity 1000 at a BTC mark of 100."""
    user = await create_user(db)
    account = await create_account(
        db, user_id=user.id, cash="800", is_default=True, taker_fee_bps="0"
    )
    await hold(db, account, BTC, "2", "100")
    return account


def request(targets: dict[str, str], **fields: Any) -> RebalanceRequest:
    return RebalanceRequest.model_validate(
        {"targets": [{"symbol": s, "weight": w} for s, w in targets.items()], **fields}
    )


class TestRebalance:
    @pytest.fixture(autouse=True)
    def marks(self, world: World) -> None:
        world.market.marks.update({BTC: D(100), ETH: D(20)})

    async def test_dry_run_returns_the_plan_and_places_nothing(self, world: World) -> None:
        account = await rebalance_account(world.db)
        plan = await world.service.rebalance(account.user_id, request({ETH: "0.5"}, dry_run=True))
        assert (plan.dry_run, plan.equity, plan.cash, plan.cash_weight) == (
            True,
            D(1000),
            D(800),
            D("0.5"),
        )
        assert [
            (a.symbol, a.current_weight, a.target_weight, a.target_quantity)
            for a in plan.allocations
        ] == [
            (BTC, D("0.2"), D(0), D(0)),
            (ETH, D(0), D("0.5"), D(25)),
        ]
        # BTC is not named: sold to zero at the bid; 25 ETH bought at the ask.
        assert [
            (o.symbol, o.side, o.quantity, o.expected_price, o.expected_notional, o.status)
            for o in plan.orders
        ] == [
            (BTC, OrderSide.SELL, D(2), D(99), D(198), RebalanceOrderStatus.PLANNED),
            (ETH, OrderSide.BUY, D(25), D("20.5"), D("512.5"), RebalanceOrderStatus.PLANNED),
        ]
        assert world.placer.placed == []

    async def test_places_market_orders_sells_first(self, world: World) -> None:
        account = await rebalance_account(world.db)
        plan = await world.service.rebalance(account.user_id, request({ETH: "0.5"}))
        placed = [
            (o.symbol, o.side, o.order_type, o.quantity, o.account_id) for o in world.placer.placed
        ]
        assert placed == [
            (BTC, OrderSide.SELL, OrderType.MARKET, D(2), account.id),
            (ETH, OrderSide.BUY, OrderType.MARKET, D(25), account.id),
        ]
        assert [o.status for o in plan.orders] == [RebalanceOrderStatus.PLACED] * 2
        # Named by the plan (so by its idempotency key) and the symbol, never by the
        # position in the plan: a retry planning in another order reuses the same ids.
        assert [o.order.client_order_id for o in plan.orders if o.order] == [
            f"rebalance-{plan.plan_id.hex}-BTC-USD",
            f"rebalance-{plan.plan_id.hex}-ETH-USD",
        ]

    async def test_a_refused_order_is_reported_and_the_rest_still_placed(
        self, world: World
    ) -> None:
        account = await rebalance_account(world.db)
        world.placer.refuse.add(BTC)
        plan = await world.service.rebalance(account.user_id, request({ETH: "0.5"}))
        assert [(o.symbol, o.status, o.reason_code) for o in plan.orders] == [
            (BTC, RebalanceOrderStatus.FAILED, "insufficient_funds"),
            (ETH, RebalanceOrderStatus.PLACED, None),
        ]

    async def test_orders_below_the_minimum_are_skipped_not_placed(self, world: World) -> None:
        account = await rebalance_account(world.db)
        # 2.05 BTC wanted: 0.05 at the ask of 101 is 5.05, under the minimum of 10.
        plan = await world.service.rebalance(account.user_id, request({"BTC-USD": "0.205"}))
        (order,) = plan.orders
        assert (order.status, order.reason_code, order.quantity) == (
            RebalanceOrderStatus.SKIPPED,
            "notional_below_minimum",
            D("0.05"),
        )
        assert world.placer.placed == []

    async def test_unknown_symbol_is_not_found(self, world: World) -> None:
        account = await rebalance_account(world.db)
        with pytest.raises(NotFoundError):
            await world.service.rebalance(account.user_id, request({"NOPE/USD": "0.5"}))

    async def test_symbol_quoted_in_another_currency_is_refused(self, world: World) -> None:
        account = await rebalance_account(world.db)
        with pytest.raises(ValidationFailedError, match="quoted in EUR"):
            await world.service.rebalance(account.user_id, request({"ETH/EUR": "0.5"}))

    async def test_two_names_of_one_symbol_are_refused(self, world: World) -> None:
        account = await rebalance_account(world.db)
        with pytest.raises(ValidationFailedError, match="more than once"):
            await world.service.rebalance(account.user_id, request({BTC: "0.2", "XBT/USD": "0.2"}))

    async def test_symbol_without_a_price_is_refused(self, world: World) -> None:
        account = await rebalance_account(world.db)
        del world.market.marks[ETH]
        with pytest.raises(ValidationFailedError, match="no market price"):
            await world.service.rebalance(account.user_id, request({ETH: "0.5"}))

    async def test_another_users_account_is_not_found(self, world: World) -> None:
        account = await rebalance_account(world.db)
        stranger = await create_user(world.db)
        with pytest.raises(NotFoundError):
            await world.service.rebalance(
                stranger.id, request({ETH: "0.5"}, account_id=str(account.id))
            )


class TestMetrics:
    async def test_pnl_and_trade_counts_of_the_account(self, world: World) -> None:
        account = await ledger_account(world.db)
        await world.service.snapshot_account(account.id)
        metrics = await world.service.metrics(account.user_id)
        assert (metrics.equity, metrics.realized_pnl, metrics.unrealized_pnl) == (
            D(995),
            D(20),
            D(-20),
        )
        assert (metrics.fees, metrics.total_pnl) == (D(5), D(-5))
        assert (metrics.total_trades, metrics.winning_trades, metrics.losing_trades) == (3, 2, 1)
        assert metrics.win_rate == D(2) / D(3)
        assert (metrics.max_drawdown, metrics.sharpe_ratio) == (D(0), None)
        assert metrics.last_snapshot_at is not None
