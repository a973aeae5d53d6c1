"""Cancel all, close a position, reset an account: the real services on each database,
the market stepped by hand (books fed as ticks), every balance and lock checked to the
unit, and the ledger invariant after each change."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from core.config import Settings
from core.exceptions import NotFoundError, ValidationFailedError
from database.orm import (
    AccountBalance,
    AgentDecision,
    Order,
    PortfolioSnapshot,
    Position,
    Trade,
    TradingAccount,
)
from main_consolidated import create_app
from models.enums import OrderStatus
from models.events import Event
from models.trading import OrderCreate, OrderRead
from models.ws_protocol import PortfolioResetData, PortfolioUpdateEvent, parse_server_message
from services.container import Services
from services.paper_trading.rules import RuleViolation
from tests.api.conftest import running_app
from tests.factories import create_account, create_agent, create_user
from tests.services.paper_trading.test_service import tick

D = Decimal
SYMBOL = "BTC/USD"
ETH = "ETH/USD"


def order(side: str, quantity: str, symbol: str = SYMBOL, **fields: Any) -> OrderCreate:
    return OrderCreate.model_validate(
        {"symbol": symbol, "side": side, "quantity": quantity, **fields}
    )


@pytest.fixture
async def services(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[Services]:
    settings = make_settings(
        database={"url": database_url},
        redis={"url": ""},
        market_data={"market_data_stream": False},
    )
    app = create_app(settings)
    async with running_app(app):
        yield app.state.services


async def new_account(
    services: Services,
    cash: str = "100000",
    *,
    user_id: uuid.UUID | None = None,
    is_default: bool = True,
) -> TradingAccount:
    db = services.database.database
    owner = user_id if user_id is not None else (await create_user(db)).id
    return await create_account(
        db,
        user_id=owner,
        cash=cash,
        is_default=is_default,
        maker_fee_bps="10",
        taker_fee_bps="20",
    )


async def buy(
    services: Services, account: TradingAccount, quantity: str, symbol: str = SYMBOL
) -> OrderRead:
    """A market buy at 100 from a deep book: holdings come from fills, so positions and
    balances agree from the start. Costs quantity * 100 plus 20 bps."""
    await services.paper_trading.on_ticks(tick("99", "100", asks=[("100", "100")], symbol=symbol))
    placed = await services.paper_trading.place_order(
        account.user_id, order("buy", quantity, symbol, account_id=str(account.id))
    )
    assert placed.status is OrderStatus.FILLED, placed
    return placed


async def rest(
    services: Services, account: TradingAccount, side: str, quantity: str, **fields: Any
) -> OrderRead:
    placed = await services.paper_trading.place_order(
        account.user_id, order(side, quantity, account_id=str(account.id), **fields)
    )
    assert placed.status in (OrderStatus.PENDING, OrderStatus.PARTIAL), placed
    return placed


async def holdings(
    services: Services, account: TradingAccount
) -> dict[str, tuple[Decimal, Decimal]]:
    async with services.database.database.read() as session:
        rows = (
            await session.execute(
                select(AccountBalance).where(AccountBalance.account_id == account.id)
            )
        ).scalars()
        return {row.asset: (row.free, row.locked) for row in rows}


def index_size(services: Services) -> int:
    return len(services.paper_trading._index)


async def assert_ledger_reconciles(services: Services, account: TradingAccount) -> None:
    """cash + Σ cost basis = initial + realized PnL - fees, exactly; total fees and
    realized PnL are the sums over the account's trades; nothing negative; each position
    equals the base asset held (free + locked); per asset, Σ locked_amount of the open
    orders = the balance's locked."""
    async with services.database.database.read() as session:
        acct = await session.get(TradingAccount, account.id, populate_existing=True)
        assert acct is not None
        balances = {
            row.asset: row
            for row in (
                await session.execute(
                    select(AccountBalance).where(AccountBalance.account_id == account.id)
                )
            ).scalars()
        }
        positions = list(
            (
                await session.execute(select(Position).where(Position.account_id == account.id))
            ).scalars()
        )
        trades = list(
            (await session.execute(select(Trade).where(Trade.account_id == account.id))).scalars()
        )
        open_orders = list(
            (
                await session.execute(
                    select(Order).where(
                        Order.account_id == account.id,
                        Order.status.in_(["pending", "partial"]),
                    )
                )
            ).scalars()
        )
    cash_row = balances[acct.base_currency]
    cash = cash_row.free + cash_row.locked
    cost = sum((p.cost_basis for p in positions), D(0))
    assert cash + cost == acct.initial_balance + acct.realized_pnl - acct.total_fees
    assert acct.total_fees == sum((t.fee for t in trades), D(0))
    assert acct.realized_pnl == sum((t.realized_pnl for t in trades), D(0))
    for row in balances.values():
        assert row.free >= 0
        assert row.locked >= 0
    for position in positions:
        base = position.symbol.split("/")[0]
        held = balances[base].free + balances[base].locked if base in balances else D(0)
        assert position.quantity == held
    locked: dict[str, Decimal] = {}
    for open_order in open_orders:
        rules = services.market_data.pair_rules(open_order.symbol)
        asset = rules.quote_asset if open_order.side == "buy" else rules.base_asset
        locked[asset] = locked.get(asset, D(0)) + open_order.locked_amount
    for asset in {*balances, *locked}:
        held_locked = balances[asset].locked if asset in balances else D(0)
        assert held_locked == locked.get(asset, D(0)), asset


async def count(services: Services, model: Any, account: TradingAccount) -> int:
    async with services.database.database.read() as session:
        query = select(func.count()).select_from(model).where(model.account_id == account.id)
        found: int = (await session.execute(query)).scalar_one()
        return found


class TestCancelAll:
    async def test_cancels_every_open_order_and_releases_every_lock(
        self, services: Services
    ) -> None:
        account = await new_account(services)
        await buy(services, account, "2")  # 200 + 0.4 fee
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100", asks=[("100", "1")]))
        partial = await rest(services, account, "buy", "3", order_type="limit", price="100")
        assert partial.status is OrderStatus.PARTIAL  # 1 taken at 100 (+0.2 fee), 2 rest
        low = await rest(services, account, "buy", "1", order_type="limit", price="50")
        await rest(services, account, "sell", "0.5", order_type="limit", price="200")
        await rest(services, account, "sell", "0.5", order_type="stop", stop_price="80")
        held = await holdings(services, account)
        assert held["BTC"] == (D("2"), D("1"))
        assert held["USD"][1] == partial.locked_amount + low.locked_amount > 0
        await assert_ledger_reconciles(services, account)
        assert index_size(services) == 4

        result = await services.paper_lifecycle.cancel_all(account.user_id)

        assert result.count == 4
        assert {o.status for o in result.items} == {OrderStatus.CANCELLED}
        assert all(o.locked_amount == 0 for o in result.items)
        assert await holdings(services, account) == {
            "USD": (D("99699.4"), D(0)),
            "BTC": (D("3"), D(0)),
        }
        assert index_size(services) == 0
        await assert_ledger_reconciles(services, account)

    async def test_only_the_named_symbol_and_account(self, services: Services) -> None:
        account = await new_account(services)
        other = await new_account(services, user_id=account.user_id, is_default=False)
        await services.paper_trading.on_ticks(tick("99", "100"))
        await services.paper_trading.on_ticks(tick("99", "100", symbol=ETH))
        btc = await rest(services, account, "buy", "1", order_type="limit", price="50")
        eth = await services.paper_trading.place_order(
            account.user_id, order("buy", "1", ETH, order_type="limit", price="50")
        )
        elsewhere = await rest(services, other, "buy", "1", order_type="limit", price="50")

        by_symbol = await services.paper_lifecycle.cancel_all(account.user_id, symbol="ETH-USD")
        assert [o.id for o in by_symbol.items] == [eth.id]
        by_account = await services.paper_lifecycle.cancel_all(
            account.user_id, account_id=account.id
        )
        assert [o.id for o in by_account.items] == [btc.id]
        assert (await services.paper_trading.get_order(account.user_id, elsewhere.id)).status is (
            OrderStatus.PENDING
        )
        assert (await holdings(services, other))["USD"][1] == elsewhere.locked_amount > 0
        await assert_ledger_reconciles(services, account)
        await assert_ledger_reconciles(services, other)

    async def test_an_order_filled_before_its_cancel_is_skipped(
        self, services: Services, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        account = await new_account(services)
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100"))
        fills = await rest(services, account, "buy", "1", order_type="limit", price="50")
        stays = await rest(services, account, "buy", "1", order_type="limit", price="40")
        cancel = trading.cancel_order

        async def fill_first(user_id: uuid.UUID, order_id: uuid.UUID, **kw: str) -> OrderRead:
            # Between the list and this cancel, the market trades through the order at 50.
            if order_id == fills.id:
                await trading.on_ticks(tick("49", "50", asks=[("50", "10")]))
            return await cancel(user_id, order_id, **kw)

        monkeypatch.setattr(trading, "cancel_order", fill_first)
        result = await services.paper_lifecycle.cancel_all(account.user_id)

        assert [o.id for o in result.items] == [stays.id]
        assert (await trading.get_order(account.user_id, fills.id)).status is OrderStatus.FILLED
        # 50 + 0.05 maker fee paid, nothing locked.
        assert await holdings(services, account) == {
            "USD": (D("99949.95"), D(0)),
            "BTC": (D("1"), D(0)),
        }
        await assert_ledger_reconciles(services, account)

    async def test_another_users_account_is_not_found(self, services: Services) -> None:
        mine = await new_account(services)
        theirs = await new_account(services)
        with pytest.raises(NotFoundError):
            await services.paper_lifecycle.cancel_all(mine.user_id, account_id=theirs.id)

    async def test_unknown_symbol_is_not_found(self, services: Services) -> None:
        account = await new_account(services)
        with pytest.raises(NotFoundError):
            await services.paper_lifecycle.cancel_all(account.user_id, symbol="NOPE/USD")


class TestClosePosition:
    async def test_cancels_the_open_sells_then_sells_the_whole_position(
        self, services: Services
    ) -> None:
        account = await new_account(services)
        await buy(services, account, "2")  # 200 + 0.4
        await rest(services, account, "sell", "1", order_type="limit", price="200")
        buy_order = await rest(services, account, "buy", "1", order_type="limit", price="50")
        await services.paper_trading.on_ticks(tick("110", "111", bids=[("110", "100")]))

        closed = await services.paper_lifecycle.close_position(account.user_id, "BTC-USD")

        assert closed.symbol == SYMBOL
        assert [o.order_type for o in closed.cancelled_orders] == ["limit"]
        assert closed.cancelled_orders[0].side == "sell"
        assert closed.order.status is OrderStatus.FILLED
        assert closed.order.filled_quantity == D("2")
        assert closed.order.fees == D("0.44")  # 220 at 20 bps
        # The open buy is left alone: it locks cash, not the asset sold.
        still = await services.paper_trading.get_order(account.user_id, buy_order.id)
        assert still.status is OrderStatus.PENDING
        assert await holdings(services, account) == {
            "USD": (
                D("100000") - D("200.4") + D("219.56") - still.locked_amount,
                still.locked_amount,
            ),
            "BTC": (D(0), D(0)),
        }
        async with services.database.database.read() as session:
            acct = await session.get(TradingAccount, account.id)
            assert acct is not None
            assert acct.realized_pnl == D("20")
        await assert_ledger_reconciles(services, account)

    async def test_percentage_sells_that_share_rounded_down_to_the_step(
        self, services: Services
    ) -> None:
        account = await new_account(services)
        await buy(services, account, "1")
        await services.paper_trading.on_ticks(tick("100", "101", bids=[("100", "100")]))
        closed = await services.paper_lifecycle.close_position(
            account.user_id, SYMBOL, percentage=D("12.345678")
        )
        assert closed.order.quantity == D("0.12345")  # 0.12345678 down to the 0.00001 step
        assert (await holdings(services, account))["BTC"] == (D("0.87655"), D(0))
        await assert_ledger_reconciles(services, account)

    async def test_quantity_sells_that_quantity(self, services: Services) -> None:
        account = await new_account(services)
        await buy(services, account, "1")
        await services.paper_trading.on_ticks(tick("100", "101", bids=[("100", "100")]))
        closed = await services.paper_lifecycle.close_position(
            account.user_id, SYMBOL, quantity=D("0.25")
        )
        assert closed.order.filled_quantity == D("0.25")
        assert (await holdings(services, account))["BTC"] == (D("0.75"), D(0))
        await assert_ledger_reconciles(services, account)

    async def test_more_than_the_position_is_refused_and_nothing_is_cancelled(
        self, services: Services
    ) -> None:
        account = await new_account(services)
        await buy(services, account, "1")
        sell = await rest(services, account, "sell", "1", order_type="limit", price="200")
        with pytest.raises(ValidationFailedError) as refused:
            await services.paper_lifecycle.close_position(
                account.user_id, SYMBOL, quantity=D("1.5")
            )
        assert refused.value.code == "quantity_exceeds_position"
        assert (await services.paper_trading.get_order(account.user_id, sell.id)).status is (
            OrderStatus.PENDING
        )

    async def test_a_sell_below_the_pair_minimum_cancels_nothing(self, services: Services) -> None:
        account = await new_account(services)
        await buy(services, account, "1")
        sell = await rest(services, account, "sell", "0.5", order_type="limit", price="200")
        # 0.00005 BTC is worth about 5 USD at the market: below the 10 USD minimum.
        with pytest.raises(RuleViolation) as refused:
            await services.paper_lifecycle.close_position(
                account.user_id, SYMBOL, quantity=D("0.00005")
            )
        assert refused.value.code == "notional_below_minimum"
        assert (await services.paper_trading.get_order(account.user_id, sell.id)).status is (
            OrderStatus.PENDING
        )
        await assert_ledger_reconciles(services, account)

    async def test_no_position_is_not_found(self, services: Services) -> None:
        account = await new_account(services)
        with pytest.raises(NotFoundError):
            await services.paper_lifecycle.close_position(account.user_id, SYMBOL)

    async def test_quantity_and_percentage_together_are_refused(self, services: Services) -> None:
        account = await new_account(services)
        await buy(services, account, "1")
        with pytest.raises(ValidationFailedError, match="not both"):
            await services.paper_lifecycle.close_position(
                account.user_id, SYMBOL, quantity=D("0.1"), percentage=D("10")
            )

    async def test_close_all_sells_each_position_and_reports_the_one_it_cannot(
        self, services: Services
    ) -> None:
        account = await new_account(services)
        await buy(services, account, "1", ETH)
        await buy(services, account, "1")
        await services.paper_trading.on_ticks(tick("100", "101", bids=[("100", "100")]))
        # Leave 0.00005 BTC: about 5 USD at the market, below the pair's 10 USD minimum.
        await services.paper_trading.place_order(account.user_id, order("sell", "0.99995"))
        await services.paper_trading.on_ticks(tick("100", "101", bids=[("100", "100")], symbol=ETH))

        result = await services.paper_lifecycle.close_all(account.user_id)

        assert [c.symbol for c in result.items] == [ETH]
        assert result.count == 1
        assert result.items[0].order.filled_quantity == D("1")
        assert [(s.symbol, s.quantity, s.code) for s in result.skipped] == [
            (SYMBOL, D("0.00005"), "notional_below_minimum")
        ]
        held = await holdings(services, account)
        assert held["ETH"] == (D(0), D(0))
        assert held["BTC"] == (D("0.00005"), D(0))
        await assert_ledger_reconciles(services, account)


async def _decision(services: Services, account: TradingAccount) -> AgentDecision:
    db = services.database.database
    agent = await create_agent(db, user_id=account.user_id)
    decision = AgentDecision(
        id=uuid.uuid4(),
        user_id=account.user_id,
        agent_id=agent.id,
        decision_type="trade",
        status="executed",
        trigger="scheduled",
        reasoning="breakout above the range",
        market_data={},
        result={},
    )
    async with db.transaction() as session:
        session.add(decision)
    return decision


async def _busy(services: Services, account: TradingAccount) -> None:
    """Fills, realized PnL, fees and open orders of every kind on the account."""
    await buy(services, account, "2")
    await services.paper_trading.on_ticks(tick("120", "121", bids=[("120", "100")]))
    await services.paper_trading.place_order(
        account.user_id, order("sell", "0.5", account_id=str(account.id))
    )
    await services.paper_trading.on_ticks(tick("99", "100", asks=[("100", "1")]))
    await rest(services, account, "buy", "3", order_type="limit", price="100")  # partial
    await rest(services, account, "sell", "1", order_type="limit", price="300")
    await rest(services, account, "sell", "0.5", order_type="stop", stop_price="80")


class TestReset:
    async def test_the_equity_curve_starts_again_from_the_reset(self, services: Services) -> None:
        account = await new_account(services, "5000")
        await _busy(services, account)
        await services.portfolio.snapshot_account(account.id)
        await services.paper_lifecycle.reset_account(account.user_id, account.id)
        async with services.database.database.read() as session:
            left = (
                await session.execute(
                    select(PortfolioSnapshot).where(PortfolioSnapshot.account_id == account.id)
                )
            ).scalars()
            assert list(left) == []
        snapshot = await services.portfolio.snapshot_account(account.id)
        assert snapshot.equity == D("5000")
        metrics = await services.portfolio.metrics(account.user_id, account_id=account.id)
        assert metrics.max_drawdown == 0

    async def test_returns_the_account_to_its_first_state(self, services: Services) -> None:
        account = await new_account(services, "5000")
        await _busy(services, account)
        await assert_ledger_reconciles(services, account)
        assert index_size(services) == 3

        reset = await services.paper_lifecycle.reset_account(account.user_id, account.id)

        assert reset.cancelled_orders == 3
        assert reset.deleted_orders == 5
        assert reset.deleted_fills == 3
        assert reset.account.initial_balance == D("5000")
        assert [(b.asset, b.free, b.locked) for b in reset.balances] == [
            ("BTC", D(0), D(0)),
            ("USD", D("5000"), D(0)),
        ]
        assert await holdings(services, account) == {
            "USD": (D("5000"), D(0)),
            "BTC": (D(0), D(0)),
        }
        async with services.database.database.read() as session:
            acct = await session.get(TradingAccount, account.id)
            assert acct is not None
            assert (acct.realized_pnl, acct.total_fees) == (D(0), D(0))
            assert (acct.total_trades, acct.winning_trades, acct.losing_trades) == (0, 0, 0)
            positions = (
                await session.execute(select(Position).where(Position.account_id == account.id))
            ).scalars()
            assert [(p.quantity, p.cost_basis, p.realized_pnl) for p in positions] == [
                (D(0), D(0), D(0))
            ]
        assert await count(services, Order, account) == 0
        assert await count(services, Trade, account) == 0
        assert index_size(services) == 0
        await assert_ledger_reconciles(services, account)

    async def test_subscribers_hear_of_the_reset_on_portfolio(self, services: Services) -> None:
        account = await new_account(services, "5000")
        await _busy(services, account)
        events: list[Event] = []
        services.event_bus.subscribe(events.append)
        await services.paper_lifecycle.reset_account(
            account.user_id, account.id, initial_balance=D("7000")
        )
        portfolio = [parse_server_message(e.payload) for e in events if e.channel == "portfolio"]
        assert len(portfolio) == 1, "one portfolio_update for the reset"
        update = portfolio[0]
        assert isinstance(update, PortfolioUpdateEvent)
        assert isinstance(update.data, PortfolioResetData)
        assert update.data.account_id == account.id
        assert update.data.cash == D("7000")
        assert (update.data.cancelled_orders, update.data.deleted_orders) == (3, 5)
        assert update.data.deleted_fills == 3
        # The cancels went out first, so a client has them all before the reset.
        kinds = [(e.channel, e.type) for e in events]
        assert kinds[-1] == ("portfolio", "portfolio_update")
        assert kinds.count(("trades", "order_cancelled")) == 3

    async def test_a_new_initial_balance_is_the_cash(self, services: Services) -> None:
        account = await new_account(services, "5000")
        await buy(services, account, "1")
        reset = await services.paper_lifecycle.reset_account(
            account.user_id, account.id, initial_balance=D("250.5")
        )
        assert reset.account.initial_balance == D("250.5")
        assert (await holdings(services, account))["USD"] == (D("250.5"), D(0))
        await assert_ledger_reconciles(services, account)

    async def test_the_default_account_when_none_is_named(self, services: Services) -> None:
        account = await new_account(services, "5000")
        await buy(services, account, "1")
        reset = await services.paper_lifecycle.reset_account(account.user_id)
        assert reset.account.id == account.id
        await assert_ledger_reconciles(services, account)

    async def test_other_accounts_are_untouched_and_still_trade(self, services: Services) -> None:
        account = await new_account(services)
        mine_too = await new_account(services, user_id=account.user_id, is_default=False)
        theirs = await new_account(services)
        await _busy(services, account)
        others = (mine_too, theirs)
        resting = {}
        for other in others:
            await buy(services, other, "1")
            await services.paper_trading.on_ticks(tick("99", "100"))
            resting[other.id] = await rest(
                services, other, "buy", "1", order_type="limit", price="60"
            )
        before = {other.id: await holdings(services, other) for other in others}

        await services.paper_lifecycle.reset_account(account.user_id, account.id)

        for other in others:
            assert await holdings(services, other) == before[other.id]
            assert await count(services, Order, other) == 2
            await assert_ledger_reconciles(services, other)
        assert index_size(services) == 2
        # Their resting orders are still in the matching index: the market fills them.
        await services.paper_trading.on_ticks(tick("59", "60", asks=[("60", "10")]))
        for other in others:
            got = await services.paper_trading.get_order(other.user_id, resting[other.id].id)
            assert got.status is OrderStatus.FILLED
            await assert_ledger_reconciles(services, other)

    async def test_the_reset_accounts_resting_orders_never_fill(self, services: Services) -> None:
        account = await new_account(services)
        await services.paper_trading.on_ticks(tick("99", "100"))
        await rest(services, account, "buy", "1", order_type="limit", price="60")
        await services.paper_lifecycle.reset_account(account.user_id, account.id)
        await services.paper_trading.on_ticks(tick("59", "60", asks=[("60", "10")]))
        assert await count(services, Trade, account) == 0
        assert await holdings(services, account) == {"USD": (D("100000"), D(0))}
        assert services.paper_trading.fill_errors == 0
        await assert_ledger_reconciles(services, account)

    async def test_decisions_behind_deleted_orders_keep_their_reasoning(
        self, services: Services
    ) -> None:
        account = await new_account(services)
        decision = await _decision(services, account)
        await services.paper_trading.on_ticks(tick("99", "100", asks=[("100", "10")]))
        await services.paper_trading.place_order(
            account.user_id, order("buy", "1"), decision_id=decision.id
        )
        await services.paper_lifecycle.reset_account(account.user_id, account.id)
        async with services.database.database.read() as session:
            kept = await session.get(AgentDecision, decision.id)
            assert kept is not None
            assert kept.reasoning == "breakout above the range"

    async def test_another_users_account_is_not_found(self, services: Services) -> None:
        mine = await new_account(services)
        theirs = await new_account(services)
        await buy(services, theirs, "1")
        with pytest.raises(NotFoundError):
            await services.paper_lifecycle.reset_account(mine.user_id, theirs.id)
        assert (await holdings(services, theirs))["BTC"] == (D("1"), D(0))

    async def test_only_a_paper_account_resets(self, services: Services) -> None:
        db = services.database.database
        live = await create_account(db, account_type="testnet", exchange="binance")
        with pytest.raises(ValidationFailedError, match="only paper accounts"):
            await services.paper_lifecycle.reset_account(live.user_id, live.id)
        assert (await holdings(services, live))["USD"] == (D("1000"), D(0))

    async def test_a_balance_that_is_not_positive_is_refused(self, services: Services) -> None:
        account = await new_account(services)
        with pytest.raises(ValidationFailedError):
            await services.paper_lifecycle.reset_account(
                account.user_id, account.id, initial_balance=D(0)
            )
