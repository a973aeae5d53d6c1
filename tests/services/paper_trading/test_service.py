"""The paper exchange end to end: the real services on each database, the market
stepped by hand, and books fed as ticks so every expected number is exact."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from connectors.base import BookLevel, OrderBook, Tick, Ticker
from core.config import Settings
from core.exceptions import ConflictError, InsufficientFundsError, NotFoundError
from database.orm import AccountBalance, Order, Position, Trade, TradingAccount
from main_consolidated import create_app
from models.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from models.trading import OrderCreate
from services.container import Services
from services.paper_trading.rules import RuleViolation
from tests.api.conftest import running_app
from tests.factories import create_account, create_user

D = Decimal
SYMBOL = "BTC/USD"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def tick(
    bid: str,
    ask: str,
    *,
    last: str | None = None,
    bids: list[tuple[str, str]] | None = None,
    asks: list[tuple[str, str]] | None = None,
    symbol: str = SYMBOL,
) -> dict[str, Tick]:
    """A market step for one symbol with the given book (best first)."""
    bid_levels = tuple(BookLevel(D(p), D(q)) for p, q in (bids or [(bid, "10")]))
    ask_levels = tuple(BookLevel(D(p), D(q)) for p, q in (asks or [(ask, "10")]))
    price = D(last) if last is not None else (D(bid) + D(ask)) / 2
    ticker = Ticker(symbol, D(bid), D(ask), price, D(0), D(0), D(0), NOW)
    return {symbol: Tick(ticker, OrderBook(symbol, bid_levels, ask_levels, NOW))}


def order(side: str, quantity: str, **fields: Any) -> OrderCreate:
    return OrderCreate.model_validate(
        {"symbol": SYMBOL, "side": side, "quantity": quantity, **fields}
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


async def buy_btc(services: Services, account: TradingAccount, quantity: str) -> None:
    """Holdings come from buys, so positions and balances agree from the start."""
    await services.paper_trading.on_ticks(tick("99", "100", asks=[("100", "100")]))
    await services.paper_trading.place_order(account.user_id, order("buy", quantity))


async def new_account(services: Services, cash: str = "100000", **balances: str) -> TradingAccount:
    db = services.database.database
    user = await create_user(db)
    return await create_account(
        db,
        user_id=user.id,
        cash=cash,
        balances=balances,
        is_default=True,
        maker_fee_bps="10",
        taker_fee_bps="20",
    )


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


async def assert_ledger_reconciles(services: Services, account: TradingAccount) -> None:
    """cash + Σ cost basis = initial + realized PnL - fees, exactly; nothing negative;
    each position equals the base asset held (free + locked); per asset, Σ locked of
    open orders = the balance's locked."""
    async with services.database.database.read() as session:
        acct = await session.get(TradingAccount, account.id)
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
        orders = list(
            (await session.execute(select(Order).where(Order.account_id == account.id))).scalars()
        )
    cash = balances["USD"].free + balances["USD"].locked
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
    # What open orders hold is exactly what the balances show locked; closed orders hold
    # nothing.
    locked: dict[str, Decimal] = {}
    for placed in orders:
        asset = "USD" if placed.side == "buy" else placed.symbol.split("/")[0]
        if placed.status in ("pending", "partial"):
            locked[asset] = locked.get(asset, D(0)) + placed.locked_amount
        else:
            assert placed.locked_amount == 0, placed
    for asset, balance in balances.items():
        assert balance.locked == locked.get(asset, D(0)), asset


class TestTakerFills:
    async def test_market_buy_walks_the_book_and_pays_the_taker_fee(
        self, services: Services
    ) -> None:
        account = await new_account(services)
        trading = services.paper_trading
        await trading.on_ticks(
            tick("99", "100", asks=[("100", "0.5"), ("101", "0.5"), ("103", "5")])
        )
        placed = await trading.place_order(account.user_id, order("buy", "1.2"))
        assert placed.status is OrderStatus.FILLED
        assert [(f.price, f.quantity) for f in placed.fills] == [
            (D("100"), D("0.5")),
            (D("101"), D("0.5")),
            (D("103"), D("0.2")),
        ]
        notional = D("50") + D("50.5") + D("20.6")
        fee = notional * D("20") / D("10000")
        assert placed.fees == fee
        assert placed.average_price == (notional / D("1.2")).quantize(D("1e-18"))
        assert all(f.liquidity == "taker" for f in placed.fills)
        held = await holdings(services, account)
        assert held["USD"] == (D("100000") - notional - fee, D(0))
        assert held["BTC"] == (D("1.2"), D(0))
        await assert_ledger_reconciles(services, account)

    async def test_orders_in_one_step_share_the_books_liquidity(self, services: Services) -> None:
        account = await new_account(services)
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100", asks=[("100", "1"), ("105", "10")]))
        first = await trading.place_order(account.user_id, order("buy", "1"))
        second = await trading.place_order(account.user_id, order("buy", "1"))
        assert [f.price for f in first.fills] == [D("100")]
        assert [f.price for f in second.fills] == [D("105")]

    async def test_thin_book_ioc_keeps_the_part_and_fok_fills_nothing(
        self, services: Services
    ) -> None:
        account = await new_account(services)
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100", asks=[("100", "0.3"), ("120", "5")]))
        ioc = await trading.place_order(
            account.user_id,
            order("buy", "1", order_type="limit", price="110", time_in_force="IOC"),
        )
        assert ioc.status is OrderStatus.CANCELLED
        assert ioc.filled_quantity == D("0.3")
        assert "immediate or cancel" in (ioc.reject_reason or "")
        await trading.on_ticks(tick("99", "100", asks=[("100", "0.3"), ("120", "5")]))
        fok = await trading.place_order(
            account.user_id,
            order("buy", "1", order_type="limit", price="110", time_in_force="FOK"),
        )
        assert fok.status is OrderStatus.REJECTED
        assert fok.fills == []
        held = await holdings(services, account)
        assert held["USD"][1] == 0  # nothing stays locked
        await assert_ledger_reconciles(services, account)

    async def test_sell_realizes_pnl_at_average_cost(self, services: Services) -> None:
        account = await new_account(services)
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100", asks=[("100", "10")]))
        await trading.place_order(account.user_id, order("buy", "1"))
        await trading.on_ticks(tick("99", "110", asks=[("110", "10")]))
        await trading.place_order(account.user_id, order("buy", "1"))
        await trading.on_ticks(tick("120", "121", bids=[("120", "10")]))
        sold = await trading.place_order(account.user_id, order("sell", "1.5"))
        assert sold.fills[0].realized_pnl == D("1.5") * (D("120") - D("105"))
        async with services.database.database.read() as session:
            position = (
                await session.execute(select(Position).where(Position.account_id == account.id))
            ).scalar_one()
        assert position.quantity == D("0.5")
        assert position.cost_basis == D("52.5")
        assert position.avg_price == D("105")
        await assert_ledger_reconciles(services, account)


class TestRefusals:
    async def test_a_buy_beyond_the_cash_is_refused_and_changes_nothing(
        self, services: Services
    ) -> None:
        account = await new_account(services, cash="50")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100", asks=[("100", "10")]))
        with pytest.raises(InsufficientFundsError, match="USD"):
            await trading.place_order(account.user_id, order("buy", "1"))
        assert (await holdings(services, account))["USD"] == (D("50"), D(0))

    async def test_no_shorting(self, services: Services) -> None:
        account = await new_account(services, BTC="0.5")
        with pytest.raises(InsufficientFundsError, match="BTC"):
            await services.paper_trading.place_order(account.user_id, order("sell", "1"))

    async def test_pair_rules_and_unknown_symbols(self, services: Services) -> None:
        account = await new_account(services)
        trading = services.paper_trading
        rules = services.market_data.pair_rules(SYMBOL)
        off_tick = rules.tick_size / 2 + D("100")
        with pytest.raises(RuleViolation, match="tick size"):
            await trading.place_order(
                account.user_id, order("buy", "1", order_type="limit", price=str(off_tick))
            )
        with pytest.raises(NotFoundError, match="NOPE"):
            await trading.place_order(
                account.user_id, OrderCreate(symbol="NOPE/USD", side=OrderSide.BUY, quantity=D(1))
            )

    async def test_another_users_account_is_not_found(self, services: Services) -> None:
        mine = await new_account(services)
        theirs = await new_account(services)
        with pytest.raises(NotFoundError):
            await services.paper_trading.place_order(
                mine.user_id, order("buy", "0.01", account_id=str(theirs.id))
            )


class TestRestingOrders:
    async def test_a_resting_limit_locks_then_fills_as_maker(self, services: Services) -> None:
        account = await new_account(services)
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100"))
        placed = await trading.place_order(
            account.user_id, order("buy", "2", order_type="limit", price="95")
        )
        assert placed.status is OrderStatus.PENDING
        reserve = D("190") + D("190") * D("20") / D("10000")  # the higher (taker) rate
        assert placed.locked_amount == reserve
        assert (await holdings(services, account))["USD"] == (D("100000") - reserve, reserve)

        # The ask falls through the limit with 0.5 available at or below it: partial.
        await trading.on_ticks(tick("93", "94", asks=[("94", "0.5"), ("96", "10")]))
        partial = await trading.get_order(account.user_id, placed.id)
        assert partial.status is OrderStatus.PARTIAL
        assert [(f.price, f.quantity, f.liquidity) for f in partial.fills] == [
            (D("95"), D("0.5"), "maker")
        ]
        assert partial.fills[0].fee == D("47.5") * D("10") / D("10000")

        await trading.on_ticks(tick("90", "91", asks=[("91", "10")]))
        done = await trading.get_order(account.user_id, placed.id)
        assert done.status is OrderStatus.FILLED
        assert done.locked_amount == 0
        held = await holdings(services, account)
        fees = D("190") * D("10") / D("10000")
        assert held["USD"] == (D("100000") - D("190") - fees, D(0))
        await assert_ledger_reconciles(services, account)

    async def test_cancel_releases_the_lock_and_a_closed_order_is_409(
        self, services: Services
    ) -> None:
        account = await new_account(services)
        await buy_btc(services, account, "1")
        trading = services.paper_trading
        placed = await trading.place_order(
            account.user_id, order("sell", "1", order_type="limit", price="150")
        )
        assert (await holdings(services, account))["BTC"] == (D(0), D("1"))
        cancelled = await trading.cancel_order(account.user_id, placed.id)
        assert cancelled.status is OrderStatus.CANCELLED
        assert (await holdings(services, account))["BTC"] == (D("1"), D(0))
        with pytest.raises(ConflictError, match="cancelled"):
            await trading.cancel_order(account.user_id, placed.id)
        # And a cancelled order never fills afterwards.
        await trading.on_ticks(tick("160", "161"))
        assert (await trading.get_order(account.user_id, placed.id)).fills == []

    async def test_stop_triggers_on_last_and_executes_against_the_book(
        self, services: Services
    ) -> None:
        account = await new_account(services)
        await buy_btc(services, account, "1")
        trading = services.paper_trading
        last = services.market_data.ticker(SYMBOL).last
        tick_size = services.market_data.pair_rules(SYMBOL).tick_size
        stop = (last * D("0.5")).quantize(tick_size)
        placed = await trading.place_order(
            account.user_id, order("sell", "1", order_type="stop", stop_price=str(stop))
        )
        assert placed.status is OrderStatus.PENDING
        below = stop - 1
        await trading.on_ticks(
            tick(
                str(below - 1),
                str(below),
                last=str(below),
                bids=[(str(below - 1), "0.4"), (str(below - 2), "5")],
            )
        )
        done = await trading.get_order(account.user_id, placed.id)
        assert done.status is OrderStatus.FILLED
        assert done.triggered_at is not None
        assert [(f.price, f.quantity) for f in done.fills] == [
            (below - 1, D("0.4")),
            (below - 2, D("0.6")),
        ]
        await assert_ledger_reconciles(services, account)


class TestIdempotency:
    async def test_same_client_order_id_returns_the_first_order(self, services: Services) -> None:
        account = await new_account(services)
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100", asks=[("100", "10")]))
        request = order("buy", "1", client_order_id="abc-1")
        first, second, third = await asyncio.gather(
            *(trading.place_order(account.user_id, request) for _ in range(3))
        )
        assert first.id == second.id == third.id
        assert (await holdings(services, account))["BTC"] == (D("1"), D(0))
        with pytest.raises(ConflictError, match="quantity") as raised:
            await trading.place_order(account.user_id, order("buy", "2", client_order_id="abc-1"))
        assert raised.value.details["differences"] == ["quantity"]


class TestConcurrency:
    async def test_fifty_concurrent_buys_never_overspend(self, services: Services) -> None:
        account = await new_account(services, cash="1000")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100", asks=[("100", "1000")]))
        results = await asyncio.gather(
            *(trading.place_order(account.user_id, order("buy", "0.5")) for _ in range(50)),
            return_exceptions=True,
        )
        filled = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(r, InsufficientFundsError) for r in refused)
        # 0.5 at 100 plus 0.2% fee is 50.10 a piece: 19 fit in 1000.
        assert len(filled) == 19
        free, locked = (await holdings(services, account))["USD"]
        assert free == D("1000") - 19 * D("50.1")
        assert locked == 0
        await assert_ledger_reconciles(services, account)

    async def test_two_instances_trading_one_account_never_overspend(
        self, services: Services, make_settings: Callable[..., Settings], database_url: str
    ) -> None:
        """Orders of one account from two processes meet only at the row lock: each
        must read the balances the other just committed, never a stale copy."""
        account = await new_account(services, cash="1000")
        other_app = create_app(
            make_settings(
                database={"url": database_url},
                redis={"url": ""},
                market_data={"market_data_stream": False},
            )
        )
        async with running_app(other_app):
            other: Services = other_app.state.services
            book = tick("99", "100", asks=[("100", "1000")])
            for instance in (services, other):
                await instance.paper_trading.on_ticks(book)
            results = await asyncio.gather(
                *(
                    instance.paper_trading.place_order(account.user_id, order("buy", "0.5"))
                    for _ in range(12)
                    for instance in (services, other)
                ),
                return_exceptions=True,
            )
        refused = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(r, InsufficientFundsError) for r in refused), refused
        assert len(results) - len(refused) == 19
        free, locked = (await holdings(services, account))["USD"]
        assert free == D("1000") - 19 * D("50.1")
        assert locked == 0
        await assert_ledger_reconciles(services, account)


class TestRestart:
    async def test_open_orders_reload_and_fill_after_a_restart(
        self, make_settings: Callable[..., Settings], database_url: str
    ) -> None:
        settings = make_settings(
            database={"url": database_url},
            redis={"url": ""},
            market_data={"market_data_stream": False},
        )
        app = create_app(settings)
        async with running_app(app):
            services: Services = app.state.services
            account = await new_account(services)
            await services.paper_trading.on_ticks(tick("99", "100"))
            placed = await services.paper_trading.place_order(
                account.user_id, order("buy", "1", order_type="limit", price="90")
            )
        again = create_app(settings)
        async with running_app(again):
            services = again.state.services
            health = await services.paper_trading.health()
            assert health.data["open_orders"] == 1
            await services.paper_trading.on_ticks(tick("88", "89", asks=[("89", "5")]))
            done = await services.paper_trading.get_order(account.user_id, placed.id)
            assert done.status is OrderStatus.FILLED
            assert done.fills[0].price == D("90")
            await assert_ledger_reconciles(services, account)


# One action of a random session: a market step, or an order of some kind.
_actions = st.one_of(
    st.tuples(st.just("tick"), st.integers(80, 120)),
    st.tuples(
        st.sampled_from(["buy", "sell"]),
        st.sampled_from([OrderType.MARKET, OrderType.LIMIT]),
        st.sampled_from([TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK]),
        st.integers(1, 30),  # quantity in hundredths
        st.integers(-10, 10),  # limit offset from the mid
    ),
    st.tuples(st.just("cancel"), st.integers(0, 20)),
)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
class TestLedgerInvariant:
    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(actions=st.lists(_actions, min_size=1, max_size=25))
    async def test_any_sequence_of_orders_reconciles(
        self, services: Services, actions: list[tuple[Any, ...]]
    ) -> None:
        account = await new_account(services, cash="1000")
        trading = services.paper_trading
        mid = 100
        placed: list[uuid.UUID] = []
        await trading.on_ticks(
            tick(
                "99", "101", bids=[("99", "0.2"), ("98", "1")], asks=[("101", "0.2"), ("102", "1")]
            )
        )
        for action in actions:
            if action[0] == "tick":
                mid = action[1]
                await trading.on_ticks(
                    tick(
                        str(mid - 1),
                        str(mid + 1),
                        bids=[(str(mid - 1), "0.2"), (str(mid - 2), "1")],
                        asks=[(str(mid + 1), "0.2"), (str(mid + 2), "1")],
                    )
                )
            elif action[0] == "cancel":
                if placed:
                    try:
                        await trading.cancel_order(account.user_id, placed[action[1] % len(placed)])
                    except ConflictError:
                        pass
            else:
                side, order_type, tif, hundredths, offset = action
                fields: dict[str, Any] = {"order_type": order_type, "time_in_force": tif}
                if order_type is OrderType.LIMIT:
                    fields["price"] = str(mid + offset)
                try:
                    result = await trading.place_order(
                        account.user_id, order(side, str(D(hundredths) / 100), **fields)
                    )
                except (InsufficientFundsError, RuleViolation):
                    continue
                placed.append(result.id)
            await assert_ledger_reconciles(services, account)
