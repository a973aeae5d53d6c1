"""The paper exchange's money defects found in review, each pinned by a test that failed
before its fix: refused orders and the shared book, per-pair fees, fee rounding against
the reserve, stranded locks, replayed markets, win/loss counting, IOC outcomes and the
account type, and the two mutants the suite let through (the balance compare-and-set,
the stop-buy trigger's funds check)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update

from core.config import Settings
from core.exceptions import InsufficientFundsError, NotFoundError, ValidationFailedError
from database.orm import AccountBalance, AgentDecision, Order, TradingAccount
from database.orm.types import strip_zeros
from main_consolidated import create_app
from models.enums import Liquidity, OrderStatus
from models.events import Event
from models.portfolio import RebalanceRequest
from services.container import Services
from services.paper_trading import fills as fills_module
from services.paper_trading import ledger
from services.paper_trading.booking import price_fills
from services.paper_trading.fees import FeeRates
from services.paper_trading.matching import fee_for, make_fill
from tests.api.conftest import running_app
from tests.factories import create_account, create_agent, create_user
from tests.services.paper_trading.test_service import (
    assert_ledger_reconciles,
    holdings,
    order,
    tick,
)

D = Decimal


async def account_of(
    services: Services,
    cash: str,
    *,
    maker: str | None = "10",
    taker: str | None = "20",
    **fields: Any,
) -> TradingAccount:
    db = services.database.database
    user = await create_user(db)
    return await create_account(
        db,
        user_id=user.id,
        cash=cash,
        is_default=True,
        maker_fee_bps=maker,
        taker_fee_bps=taker,
        **fields,
    )


async def reloaded(services: Services, account: TradingAccount) -> TradingAccount:
    async with services.database.database.read() as session:
        row = await session.get(TradingAccount, account.id)
        assert row is not None
        return row


class TestARefusedOrderLeavesTheBook:
    """Defect 1: depth was taken before the funds check, and again on every retry."""

    async def test_a_buy_refused_for_funds_leaves_the_depth_to_the_next_order(
        self, services: Services
    ) -> None:
        poor = await account_of(services, "50")
        rich = await account_of(services, "1000")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100", asks=[("100", "1"), ("101", "10")]))
        with pytest.raises(InsufficientFundsError):
            await trading.place_order(poor.user_id, order("buy", "10"))
        placed = await trading.place_order(rich.user_id, order("buy", "1"))
        assert placed.status is OrderStatus.FILLED
        assert [(f.price, f.quantity) for f in placed.fills] == [(D(100), D(1))]
        assert (await holdings(services, poor))["USD"] == (D(50), D(0))

    async def test_a_retried_conflict_fills_at_the_depth_it_first_saw(
        self, services: Services, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        account = await account_of(services, "1000")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100", asks=[("100", "1"), ("101", "10")]))
        real = ledger.write_balances
        calls = 0

        async def conflict_once(session: Any, book: ledger.Book) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ledger.LedgerConflictError("the USD balance changed during the order")
            await real(session, book)

        monkeypatch.setattr(ledger, "write_balances", conflict_once)
        placed = await trading.place_order(account.user_id, order("buy", "1"))
        assert calls == 2
        assert [(f.price, f.quantity) for f in placed.fills] == [(D(100), D(1))]
        await assert_ledger_reconciles(services, account)

    async def test_a_stop_refused_at_its_trigger_leaves_the_depth_and_says_what_it_held(
        self, services: Services
    ) -> None:
        trading = services.paper_trading
        stop = stop_above_the_market(services)
        lock = stop_buy_lock(stop)
        stopper = await account_of(services, str(lock))
        other = await account_of(services, str(stop * 10))
        placed = await trading.place_order(
            stopper.user_id, order("buy", "1", order_type="stop", stop_price=str(stop))
        )
        assert placed.locked_amount == lock
        dear, dearer = stop * D("1.2"), stop * D("1.3")
        await trading.on_ticks(
            tick(
                str(dear - 1),
                str(dear),
                last=str(stop),
                asks=[(str(dear), "1"), (str(dearer), "9")],
            )
        )
        rejected = await trading.get_order(stopper.user_id, placed.id)
        assert rejected.status is OrderStatus.REJECTED
        assert rejected.reject_reason is not None
        assert f"more than the {strip_zeros(lock)} held and the 0 free" in rejected.reject_reason
        bought = await trading.place_order(other.user_id, order("buy", "1"))
        assert [(f.price, f.quantity) for f in bought.fills] == [(dear, D(1))]
        assert (await holdings(services, stopper))["USD"] == (lock, D(0))


def stop_above_the_market(services: Services) -> Decimal:
    """A buy stop the market's last price has not reached (orders are checked against
    the market data service's ticker when placed)."""
    last = services.market_data.ticker("BTC/USD").last
    return (last * 2).quantize(D(1))


def stop_buy_lock(stop: Decimal) -> Decimal:
    """A stop-market buy of 1 locks its stop plus 5%, and the fee on that at 20 bps."""
    reserve = stop * D("1.05")
    return reserve + fee_for(reserve, D(20))


class TestStopBuyTriggerFunds:
    """The mutant `shortfall > free` -> `>=` passed the whole suite: no test placed a stop
    buy whose fill needed exactly the free cash on top of its lock."""

    async def test_a_fill_costing_exactly_the_lock_and_the_free_cash_goes_through(
        self, services: Services
    ) -> None:
        trading = services.paper_trading
        stop = stop_above_the_market(services)
        lock = stop_buy_lock(stop)
        price = stop * D("1.1")
        cost = price + fee_for(price, D(20))
        account = await account_of(services, str(cost))
        placed = await trading.place_order(
            account.user_id, order("buy", "1", order_type="stop", stop_price=str(stop))
        )
        assert (await holdings(services, account))["USD"] == (cost - lock, lock)
        await trading.on_ticks(
            tick(str(price - 1), str(price), last=str(stop), asks=[(str(price), "5")])
        )
        filled = await trading.get_order(account.user_id, placed.id)
        assert filled.status is OrderStatus.FILLED
        assert (await holdings(services, account))["USD"] == (D(0), D(0))
        await assert_ledger_reconciles(services, account)


class TestPairFees:
    """Defect 2: every fill paid the account's flat rates, whatever the pair."""

    async def test_an_equity_pair_without_commission_charges_none(self, services: Services) -> None:
        account = await account_of(services, "5000", maker=None, taker=None)
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100", asks=[("100", "50")], symbol="AAPL/USD"))
        placed = await trading.place_order(account.user_id, order("buy", "20", symbol="AAPL/USD"))
        assert placed.fees == 0
        assert (await holdings(services, account))["USD"] == (D(3000), D(0))
        await assert_ledger_reconciles(services, account)

    async def test_a_crypto_pair_charges_its_schedule(self, services: Services) -> None:
        account = await account_of(services, "1000", maker=None, taker=None)
        trading = services.paper_trading
        rules = services.market_data.pair_rules("BTC/USD")
        assert (rules.maker_fee_bps, rules.taker_fee_bps) == (D(10), D(20))
        await trading.on_ticks(tick("99", "100", asks=[("100", "5")]))
        placed = await trading.place_order(account.user_id, order("buy", "1"))
        assert placed.fees == D("0.2")

    async def test_an_account_override_wins_over_the_pair(self, services: Services) -> None:
        account = await account_of(services, "1000", maker="0", taker="5")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100", asks=[("100", "5")]))
        placed = await trading.place_order(account.user_id, order("buy", "1"))
        assert placed.fees == D("0.05")

    async def test_a_resting_equity_buy_reserves_no_fee(self, services: Services) -> None:
        account = await account_of(services, "5000", maker=None, taker=None)
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100", symbol="AAPL/USD"))
        placed = await trading.place_order(
            account.user_id,
            order("buy", "10", symbol="AAPL/USD", order_type="limit", price="95"),
        )
        assert placed.locked_amount == D(950)


class TestFeeRoundingAgainstTheReserve:
    """Defect 4: per-fill rounding added up past the reserve of a resting buy that held
    all the cash; the fill then failed on every tick, its funds locked for good."""

    def test_an_orders_fees_of_one_kind_are_the_fee_of_their_total(self) -> None:
        rates = FeeRates(maker_bps=D(10), taker_bps=D(10))
        # 100.05 * 0.0101 = 1.010505: a fee of 0.0010105050, half a quantum each time.
        fills = [make_fill(D("100.05"), D("0.0101"), D(0), Liquidity.MAKER) for _ in range(10)]
        priced = price_fills(fills, rates)
        total = sum((f.notional for f in priced), D(0))
        assert sum((f.fee for f in priced), D(0)) == fee_for(total, D(10))
        naive = sum((fee_for(f.notional, D(10)) for f in fills), D(0))
        assert naive > fee_for(total, D(10))  # what the old per-fill rounding charged

    async def test_a_resting_buy_holding_all_the_cash_fills_in_many_parts(
        self, services: Services
    ) -> None:
        # 0.101 @100.05 = 10.10505, fee at 10 bps 0.01010505: the reserve is all the cash.
        account = await account_of(services, "10.11515505", maker="10", taker="10")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "101"))
        placed = await trading.place_order(
            account.user_id, order("buy", "0.101", order_type="limit", price="100.05")
        )
        assert (await holdings(services, account))["USD"] == (D(0), D("10.11515505"))
        for _ in range(10):
            await trading.on_ticks(
                tick("99", "100.05", bids=[("99", "1")], asks=[("100.05", "0.0101")])
            )
        done = await trading.get_order(account.user_id, placed.id)
        assert done.status is OrderStatus.FILLED
        assert len(done.fills) == 10
        assert done.fees == D("0.01010505")
        assert trading.fill_errors == 0
        assert (await holdings(services, account))["USD"] == (D(0), D(0))
        await assert_ledger_reconciles(services, account)

    async def test_a_fill_that_fails_twice_cancels_the_order_and_releases_its_lock(
        self, services: Services, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        account = await account_of(services, "1000")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "101"))
        placed = await trading.place_order(
            account.user_id, order("buy", "1", order_type="limit", price="100")
        )

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise ValueError("the ledger refused the fill")

        monkeypatch.setattr(fills_module, "apply_fills", broken)
        events: list[Event] = []
        services.event_bus.subscribe(events.append)
        crossing = tick("99", "100", bids=[("99", "1")], asks=[("100", "5")])
        await trading.on_ticks(crossing)
        assert (await trading.get_order(account.user_id, placed.id)).status is (OrderStatus.PENDING)
        await trading.on_ticks(crossing)
        closed = await trading.get_order(account.user_id, placed.id)
        assert closed.status is OrderStatus.CANCELLED
        assert closed.reject_reason is not None
        assert "failed twice" in closed.reject_reason
        assert "the ledger refused the fill" in closed.reject_reason
        assert (await holdings(services, account))["USD"] == (D(1000), D(0))
        await trading.on_ticks(crossing)  # gone from the index: no third attempt
        assert trading.fill_errors == 2
        # Subscribers hear of it as the cancel it is, not as a trade.
        about = [
            e.envelope()
            for e in events
            if e.channel == "trades" and e.envelope()["data"]["id"] == str(placed.id)
        ]
        assert [e["type"] for e in about] == ["order_cancelled"]
        assert about[0]["data"]["status"] == "cancelled"
        assert "failed twice" in about[0]["data"]["reject_reason"]


class TestAnUntradedPairStillReleases:
    """Defect 5: cancelling read the pair's rules, so an order of a pair no longer
    traded was a 404 and its lock never came back."""

    async def test_an_order_of_a_pair_no_longer_traded_cancels_and_releases(
        self, services: Services, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        account = await account_of(services, "1000")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "101"))
        placed = await trading.place_order(
            account.user_id, order("buy", "1", order_type="limit", price="90")
        )
        market = services.market_data

        def gone(symbol: str) -> Any:
            raise NotFoundError(f"unknown symbol {symbol!r}")

        monkeypatch.setattr(market, "pair_rules", gone)
        cancelled = await trading.cancel_order(account.user_id, placed.id)
        assert cancelled.status is OrderStatus.CANCELLED
        assert (await holdings(services, account))["USD"] == (D(1000), D(0))


class TestAFreshMarketPerRun:
    """Defect 6: the live seed was fixed, so every restart replayed the same moves."""

    async def test_unseeded_runs_differ_and_seeded_runs_repeat(
        self, make_settings: Callable[..., Settings], database_url: str
    ) -> None:
        async def seed_of(seed: int | None) -> str:
            settings = make_settings(
                database={"url": database_url},
                redis={"url": ""},
                market_data={"market_data_stream": False, "simulation_seed": seed},
            )
            app = create_app(settings)
            async with running_app(app):
                health = await app.state.services.market_data.health()
                detail: str = health.detail
                return detail

        assert await seed_of(7) == await seed_of(7) == "simulated, seed 7"
        unseeded = {await seed_of(None) for _ in range(3)}
        assert len(unseeded) == 3


class TestWinsAndLosses:
    """Defect 7: counted per sell fill, net of the sell fee only."""

    async def test_a_round_trip_losing_to_fees_is_one_loss(self, services: Services) -> None:
        account = await account_of(services, "1000")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100", asks=[("100", "5")]))
        await trading.place_order(account.user_id, order("buy", "1"))  # fee 0.2
        # 1 sold over three levels for 100.30: +0.30 gross, fees 0.2006 + 0.2.
        await trading.on_ticks(
            tick("100.2", "101", bids=[("100.4", "0.25"), ("100.3", "0.5"), ("100.2", "0.25")])
        )
        sold = await trading.place_order(account.user_id, order("sell", "1"))
        assert len(sold.fills) == 3
        assert sum((f.realized_pnl for f in sold.fills), D(0)) == D("0.3")
        row = await reloaded(services, account)
        assert (row.total_trades, row.winning_trades, row.losing_trades) == (1, 0, 1)

    async def test_a_round_trip_beating_both_fees_is_one_win(self, services: Services) -> None:
        account = await account_of(services, "1000")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100", asks=[("100", "5")]))
        await trading.place_order(account.user_id, order("buy", "1"))
        await trading.on_ticks(tick("101", "102", bids=[("101", "5")]))
        await trading.place_order(account.user_id, order("sell", "0.5"))
        await trading.place_order(account.user_id, order("sell", "0.5"))
        row = await reloaded(services, account)
        assert (row.total_trades, row.winning_trades, row.losing_trades) == (2, 2, 0)


class TestOutcomesAndAccounts:
    """Defect 8: an IOC that filled nothing was `rejected`; any account type traded."""

    async def test_an_ioc_that_fills_nothing_is_cancelled_with_the_reason(
        self, services: Services
    ) -> None:
        account = await account_of(services, "1000")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "101"))
        placed = await trading.place_order(
            account.user_id,
            order("buy", "1", order_type="limit", price="100", time_in_force="IOC"),
        )
        assert placed.status is OrderStatus.CANCELLED
        assert placed.reject_reason is not None
        assert "immediate or cancel" in placed.reject_reason
        assert (await holdings(services, account))["USD"] == (D(1000), D(0))

    async def test_a_live_account_is_refused_by_the_paper_exchange(
        self, services: Services
    ) -> None:
        account = await account_of(services, "1000", account_type="testnet", exchange="binance")
        await services.paper_trading.on_ticks(tick("99", "100"))
        with pytest.raises(ValidationFailedError, match="paper accounts only"):
            await services.paper_trading.place_order(account.user_id, order("buy", "1"))
        assert (await holdings(services, account))["USD"] == (D(1000), D(0))


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
class TestBalanceCompareAndSet:
    """The mutant that dropped the compare-and-set from the balance UPDATE passed the
    suite: no test changed a balance between the order's lock and its write. Only
    PostgreSQL lets another writer in there (SQLite's BEGIN IMMEDIATE shuts it out)."""

    async def test_a_deposit_made_during_an_order_is_not_overwritten(
        self, services: Services, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        account = await account_of(services, "1000")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100", asks=[("100", "5")]))
        real = ledger.write_balances
        deposited = False

        async def deposit_first(session: Any, book: ledger.Book) -> None:
            nonlocal deposited
            if not deposited:
                deposited = True
                async with services.database.database.transaction() as other:
                    await other.execute(
                        update(AccountBalance)
                        .where(
                            AccountBalance.account_id == account.id,
                            AccountBalance.asset == "USD",
                        )
                        .values(free=D(1500))
                    )
            await real(session, book)

        monkeypatch.setattr(ledger, "write_balances", deposit_first)
        await trading.place_order(account.user_id, order("buy", "1"))
        async with services.database.database.read() as session:
            usd = (
                await session.execute(
                    select(AccountBalance).where(
                        AccountBalance.account_id == account.id, AccountBalance.asset == "USD"
                    )
                )
            ).scalar_one()
        # The order was retried on the deposited balance: 1500 - 100.2.
        assert usd.free == D("1399.8")


class TestRebalanceOnTheExchange:
    """Defect 9: a retried POST rebalanced twice; buys were priced at the touch while
    execution walked the book; the orders carried no agent or decision."""

    @staticmethod
    def targets(**weights: str) -> RebalanceRequest:
        return RebalanceRequest.model_validate(
            {"targets": [{"symbol": s, "weight": w} for s, w in weights.items()]}
        )

    async def test_a_retry_with_the_same_key_returns_the_first_run(
        self, services: Services
    ) -> None:
        mark = services.market_data.ticker("BTC/USD").last
        account = await account_of(services, str(mark * 10))
        await services.paper_trading.on_ticks(
            tick(str(mark - 1), str(mark), asks=[(str(mark), "100")])
        )
        request = RebalanceRequest.model_validate(
            {"targets": [{"symbol": "BTC/USD", "weight": "0.5"}], "account_id": str(account.id)}
        )
        first = await services.portfolio.rebalance(
            account.user_id, request, idempotency_key="retry-me"
        )
        assert [o.status.value for o in first.orders] == ["placed"]
        again = await services.portfolio.rebalance(
            account.user_id, request, idempotency_key="retry-me"
        )
        assert (first.replayed, again.replayed) == (False, True)
        assert again.plan_id == first.plan_id
        assert [o.order.id for o in again.orders if o.order] == [
            o.order.id for o in first.orders if o.order
        ]
        page = await services.paper_activity.history(account.user_id, account_id=account.id)
        assert page.total == 1
        other = await services.portfolio.rebalance(
            account.user_id, request, idempotency_key="another-key"
        )
        assert other.replayed is False
        assert other.plan_id != first.plan_id

    async def test_buys_are_priced_by_walking_the_book_so_the_last_one_still_fits(
        self, services: Services
    ) -> None:
        btc = services.market_data.ticker("BTC/USD").last
        eth = services.market_data.ticker("ETH/USD").last
        account = await account_of(services, str(btc * 10), maker="0", taker="0")
        trading = services.paper_trading
        # A thin BTC book: the touch says `btc`, but 9 BTC cost 9.8 times it. Priced at
        # the touch, BTC would take the cash ETH needs.
        await trading.on_ticks(
            tick(str(btc - 1), str(btc), asks=[(str(btc), "1"), (str(btc * D("1.1")), "100")])
        )
        await trading.on_ticks(
            tick(str(eth - 1), str(eth), asks=[(str(eth), "100000")], symbol="ETH/USD")
        )
        plan = await services.portfolio.rebalance(
            account.user_id, self.targets(**{"BTC/USD": "0.9", "ETH/USD": "0.1"})
        )
        statuses = [
            (o.symbol, o.order.status.value if o.order else o.status.value) for o in plan.orders
        ]
        assert statuses == [("BTC/USD", "filled"), ("ETH/USD", "filled")]
        bought = plan.orders[0]
        assert bought.expected_price > btc  # the walk, not the touch
        assert bought.order is not None
        assert bought.order.average_price is not None
        assert abs(bought.order.average_price - bought.expected_price) < D("1e-9")

    async def test_an_agents_rebalance_orders_name_the_agent_and_the_decision(
        self, services: Services
    ) -> None:
        db = services.database.database
        user = await create_user(db)
        agent = await create_agent(db, user_id=user.id)
        mark = services.market_data.ticker("BTC/USD").last
        account = await create_account(db, user_id=user.id, agent_id=agent.id, cash=mark * 10)
        decision = AgentDecision(
            id=uuid.uuid4(),
            user_id=user.id,
            agent_id=agent.id,
            status="pending",
            reasoning="rebalance to half BTC",
        )
        async with db.transaction() as session:
            session.add(decision)
        await services.paper_trading.on_ticks(
            tick(str(mark - 1), str(mark), asks=[(str(mark), "100")])
        )
        request = RebalanceRequest.model_validate(
            {"targets": [{"symbol": "BTC/USD", "weight": "0.5"}], "account_id": str(account.id)}
        )
        plan = await services.portfolio.rebalance(user.id, request, decision_id=decision.id)
        placed = [o.order for o in plan.orders if o.order]
        assert placed
        assert all(o.agent_id == agent.id for o in placed)
        async with db.read() as session:
            rows = (
                await session.execute(select(Order).where(Order.account_id == account.id))
            ).scalars()
            assert {row.decision_id for row in rows} == {decision.id}
