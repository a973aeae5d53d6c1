"""Time in force DAY and GTD, post-only limits, notional market orders, the stop
trigger, and replacing an open order: each as a user sees it, with exact balances."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from core.config import Settings
from core.exceptions import ConflictError, InsufficientFundsError, ValidationFailedError
from database.orm import TradingAccount
from main_consolidated import create_app
from models.enums import OrderStatus
from models.trading import OrderCreate, OrderReplace
from services.container import Services
from services.paper_trading.placing import end_of_day
from tests.api.conftest import running_app
from tests.factories import create_account, create_user
from tests.services.paper_trading.test_service import (
    assert_ledger_reconciles,
    buy_btc,
    holdings,
    order,
    tick,
)

D = Decimal


async def account_of(services: Services, cash: str = "10000") -> TradingAccount:
    db = services.database.database
    user = await create_user(db)
    return await create_account(
        db,
        user_id=user.id,
        cash=cash,
        is_default=True,
        maker_fee_bps="10",
        taker_fee_bps="20",
    )


def limit(side: str, quantity: str, price: str, **fields: Any) -> Any:
    return order(side, quantity, order_type="limit", price=price, **fields)


class TestExpiry:
    def test_a_day_order_lasts_until_the_next_utc_midnight(self) -> None:
        placed = datetime(2026, 3, 9, 23, 59, 59, tzinfo=UTC)
        assert end_of_day(placed) == datetime(2026, 3, 10, tzinfo=UTC)

    async def test_a_gtd_order_expires_and_releases_its_lock(self, services: Services) -> None:
        account = await account_of(services, "1000")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "101"))
        now = datetime.now(UTC)
        expiry = now + timedelta(hours=1)
        placed = await trading.place_order(
            account.user_id,
            limit("buy", "1", "90", time_in_force="GTD", expires_at=expiry.isoformat()),
        )
        assert placed.expires_at == expiry
        assert (await holdings(services, account))["USD"] == (D("909.82"), D("90.18"))
        await trading.on_ticks(tick("99", "101"))  # not yet
        assert (await trading.get_order(account.user_id, placed.id)).status is (OrderStatus.PENDING)
        trading._clock = lambda: expiry  # the hour passes
        await trading.on_ticks(tick("99", "101"))
        expired = await trading.get_order(account.user_id, placed.id)
        assert expired.status is OrderStatus.CANCELLED
        assert expired.reject_reason is not None
        assert expired.reject_reason.startswith("expired (GTD)")
        assert (await holdings(services, account))["USD"] == (D(1000), D(0))
        await trading.on_ticks(tick("80", "89", asks=[("89", "5")]))  # would have filled
        assert (await trading.get_order(account.user_id, placed.id)).fills == []

    async def test_a_day_order_rests_with_its_days_end(self, services: Services) -> None:
        account = await account_of(services, "1000")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "101"))
        placed = await trading.place_order(
            account.user_id, limit("buy", "1", "90", time_in_force="DAY")
        )
        assert placed.status is OrderStatus.PENDING
        assert placed.expires_at == end_of_day(placed.created_at)

    async def test_a_gtd_order_in_the_past_is_refused(self, services: Services) -> None:
        account = await account_of(services, "1000")
        past = datetime.now(UTC) - timedelta(minutes=1)
        with pytest.raises(ValidationFailedError, match="not in the future"):
            await services.paper_trading.place_order(
                account.user_id,
                limit("buy", "1", "90", time_in_force="GTD", expires_at=past.isoformat()),
            )
        assert (await holdings(services, account))["USD"] == (D(1000), D(0))


class TestPostOnly:
    async def test_a_post_only_limit_that_would_cross_is_rejected_untraded(
        self, services: Services
    ) -> None:
        account = await account_of(services, "1000")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100", asks=[("100", "5")]))
        placed = await trading.place_order(
            account.user_id, limit("buy", "1", "100", post_only=True)
        )
        assert placed.status is OrderStatus.REJECTED
        assert placed.fills == []
        assert placed.reject_reason is not None
        assert "post-only" in placed.reject_reason
        assert (await holdings(services, account))["USD"] == (D(1000), D(0))

    async def test_a_post_only_limit_below_the_ask_rests_and_fills_as_maker(
        self, services: Services
    ) -> None:
        account = await account_of(services, "1000")
        trading = services.paper_trading
        await trading.on_ticks(tick("98", "100", bids=[("98", "1")], asks=[("100", "5")]))
        placed = await trading.place_order(account.user_id, limit("buy", "1", "99", post_only=True))
        assert placed.status is OrderStatus.PENDING
        assert placed.post_only is True
        await trading.on_ticks(tick("97", "99", bids=[("97", "1")], asks=[("99", "5")]))
        done = await trading.get_order(account.user_id, placed.id)
        assert done.status is OrderStatus.FILLED
        assert [f.liquidity.value for f in done.fills] == ["maker"]
        await assert_ledger_reconciles(services, account)


class TestNotional:
    async def test_a_notional_buy_spends_at_most_the_amount_fees_included(
        self, services: Services
    ) -> None:
        account = await account_of(services, "1000")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100", asks=[("100", "0.5"), ("110", "10")]))
        placed = await trading.place_order(account.user_id, _create(side="buy", notional="200"))
        # 0.5 @100 costs 50.1 with the fee; 149.9 left buys 149.9 / 110.22 = 1.36000...
        assert placed.notional == D(200)
        assert placed.quantity == D("1.86")
        assert [(f.price, f.quantity) for f in placed.fills] == [
            (D(100), D("0.5")),
            (D(110), D("1.36")),
        ]
        spent = D(1000) - (await holdings(services, account))["USD"][0]
        assert spent == D("50.1") + D("149.6") + D("0.2992")
        assert spent <= 200
        await assert_ledger_reconciles(services, account)

    async def test_a_notional_sell_sells_what_the_bids_pay_that_much_for(
        self, services: Services
    ) -> None:
        account = await account_of(services, "1000")
        await buy_btc(services, account, "5")
        trading = services.paper_trading
        await trading.on_ticks(tick("100", "101", bids=[("100", "1"), ("90", "10")]))
        placed = await trading.place_order(account.user_id, _create(side="sell", notional="190"))
        assert placed.quantity == D("2")
        assert [(f.price, f.quantity) for f in placed.fills] == [(D(100), D(1)), (D(90), D(1))]

    async def test_a_notional_too_small_for_one_step_is_refused(self, services: Services) -> None:
        account = await account_of(services, "1000")
        await services.paper_trading.on_ticks(tick("99", "100"))
        with pytest.raises(ValidationFailedError, match="does not buy one step"):
            await services.paper_trading.place_order(
                account.user_id, _create(side="buy", notional="0.0001")
            )


def _create(**fields: Any) -> OrderCreate:
    return OrderCreate.model_validate({"symbol": "BTC/USD", **fields})


class TestStopTrigger:
    async def test_a_sell_stop_on_the_bid_triggers_when_the_bid_falls_through(
        self, services: Services
    ) -> None:
        account = await account_of(services, "1000")
        await buy_btc(services, account, "1")
        trading = services.paper_trading
        last = services.market_data.ticker("BTC/USD").last
        stop = (last / 2).quantize(D(1))
        placed = await trading.place_order(
            account.user_id,
            order("sell", "1", order_type="stop", stop_price=str(stop), stop_trigger="bid"),
        )
        assert placed.status is OrderStatus.PENDING
        # The last trade is above the stop, the bid below it: the bid triggers it.
        below = stop - 1
        await trading.on_ticks(
            tick(str(below), str(stop + 5), last=str(stop + 2), bids=[(str(below), "5")])
        )
        done = await trading.get_order(account.user_id, placed.id)
        assert done.status is OrderStatus.FILLED
        assert done.fills[0].price == below

    async def test_a_last_triggered_stop_ignores_the_same_bid(self, services: Services) -> None:
        account = await account_of(services, "1000")
        await buy_btc(services, account, "1")
        trading = services.paper_trading
        last = services.market_data.ticker("BTC/USD").last
        stop = (last / 2).quantize(D(1))
        placed = await trading.place_order(
            account.user_id, order("sell", "1", order_type="stop", stop_price=str(stop))
        )
        below = stop - 1
        await trading.on_ticks(
            tick(str(below), str(stop + 5), last=str(stop + 2), bids=[(str(below), "5")])
        )
        assert (await trading.get_order(account.user_id, placed.id)).status is (OrderStatus.PENDING)


class TestReplace:
    async def test_replacing_moves_the_lock_to_the_new_version(self, services: Services) -> None:
        account = await account_of(services, "1000")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "101"))
        old = await trading.place_order(account.user_id, limit("buy", "1", "90"))
        new = await trading.replace_order(
            account.user_id, old.id, OrderReplace(quantity=D(2), price=D(95))
        )
        assert new.replaces_order_id == old.id
        assert (new.quantity, new.price, new.status) == (D(2), D(95), OrderStatus.PENDING)
        retired = await trading.get_order(account.user_id, old.id)
        assert retired.status is OrderStatus.CANCELLED
        assert retired.reject_reason == f"replaced by order {new.id}"
        # 2 @95 + 0.2% = 190.38 held for the new one; nothing for the old one.
        assert (await holdings(services, account))["USD"] == (D("809.62"), D("190.38"))
        await trading.on_ticks(tick("90", "94", asks=[("94", "5")]))
        assert (await trading.get_order(account.user_id, old.id)).fills == []
        done = await trading.get_order(account.user_id, new.id)
        assert done.status is OrderStatus.FILLED
        await assert_ledger_reconciles(services, account)

    async def test_a_refused_replacement_leaves_the_old_order_as_it_was(
        self, services: Services
    ) -> None:
        account = await account_of(services, "100")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "101"))
        old = await trading.place_order(account.user_id, limit("buy", "1", "90"))
        before = await holdings(services, account)
        with pytest.raises(InsufficientFundsError):
            await trading.replace_order(account.user_id, old.id, OrderReplace(quantity=D(5)))
        kept = await trading.get_order(account.user_id, old.id)
        assert (kept.status, kept.quantity, kept.locked_amount) == (
            OrderStatus.PENDING,
            D(1),
            old.locked_amount,
        )
        assert await holdings(services, account) == before
        await trading.on_ticks(tick("80", "89", asks=[("89", "5")]))
        assert (await trading.get_order(account.user_id, old.id)).status is OrderStatus.FILLED

    async def test_a_closed_order_cannot_be_replaced(self, services: Services) -> None:
        account = await account_of(services, "1000")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "100", asks=[("100", "5")]))
        filled = await trading.place_order(account.user_id, order("buy", "1"))
        with pytest.raises(ConflictError, match="cannot be replaced"):
            await trading.replace_order(account.user_id, filled.id, OrderReplace(quantity=D(2)))

    async def test_a_replacement_the_type_does_not_take_is_a_validation_error(
        self, services: Services
    ) -> None:
        account = await account_of(services, "1000")
        trading = services.paper_trading
        await trading.on_ticks(tick("99", "101"))
        old = await trading.place_order(account.user_id, limit("buy", "1", "90"))
        with pytest.raises(ValidationFailedError, match="takes no stop_price"):
            await trading.replace_order(account.user_id, old.id, OrderReplace(stop_price=D(80)))


class TestTheBookRemembers:
    """PAPER_BOOK_RECOVERY through the real service: what one order took is still gone,
    in part, for the next one after a market step; makers and takers share a step."""

    @pytest.fixture
    async def half(
        self, make_settings: Callable[..., Settings], database_url: str
    ) -> AsyncIterator[Services]:
        settings = make_settings(
            database={"url": database_url},
            redis={"url": ""},
            market_data={"market_data_stream": False},
            paper={"book_recovery": "0.5"},
        )
        app = create_app(settings)
        async with running_app(app):
            yield app.state.services

    async def test_a_large_buy_moves_the_price_for_the_next_one(self, half: Services) -> None:
        first = await account_of(half, "10000")
        second = await account_of(half, "10000")
        trading = half.paper_trading
        book = tick("99", "100", asks=[("100", "2"), ("101", "10")])
        await trading.on_ticks(book)
        await trading.place_order(first.user_id, order("buy", "2"))
        await trading.on_ticks(book)  # the same book again: half of the 2 came back
        bought = await trading.place_order(second.user_id, order("buy", "2"))
        assert [(f.price, f.quantity) for f in bought.fills] == [
            (D(100), D(1)),
            (D(101), D(1)),
        ]
        shown = trading.taker_book("BTC/USD")
        assert shown.asks[0].price == D(101)  # what the next order walks, and the API shows

    async def test_a_maker_and_a_taker_never_fill_against_the_same_depth(
        self, half: Services
    ) -> None:
        maker = await account_of(half, "1000")
        taker = await account_of(half, "1000")
        await buy_btc(half, maker, "1")
        await buy_btc(half, taker, "1")
        trading = half.paper_trading
        await trading.on_ticks(tick("98", "102", bids=[("98", "5")], asks=[("102", "5")]))
        resting = await trading.place_order(maker.user_id, limit("sell", "1", "100"))
        # A step whose bids show 1 @100: the resting sell trades it as maker; the market
        # sell of the same step finds the next bid, not the same 1 @100 again.
        await trading.on_ticks(
            tick("100", "101", bids=[("100", "1"), ("99", "5")], asks=[("101", "5")])
        )
        assert (await trading.get_order(maker.user_id, resting.id)).status is OrderStatus.FILLED
        sold = await trading.place_order(taker.user_id, order("sell", "1"))
        assert [(f.price, f.quantity) for f in sold.fills] == [(D(99), D(1))]


class TestLatency:
    """PAPER_ORDER_LATENCY_MS: an order meets the book as it is when it arrives."""

    @pytest.fixture
    async def slow(
        self, make_settings: Callable[..., Settings], database_url: str
    ) -> AsyncIterator[Services]:
        settings = make_settings(
            database={"url": database_url},
            redis={"url": ""},
            market_data={"market_data_stream": False},
            paper={"order_latency_ms": 250},
        )
        app = create_app(settings)
        async with running_app(app):
            yield app.state.services

    async def test_the_market_steps_while_the_order_is_on_its_way(self, slow: Services) -> None:
        account = await account_of(slow, "1000")
        trading = slow.paper_trading
        await trading.on_ticks(tick("99", "100", asks=[("100", "5")]))
        waited: list[float] = []
        on_its_way, arrive = asyncio.Event(), asyncio.Event()

        async def travel(seconds: float) -> None:
            waited.append(seconds)
            on_its_way.set()
            await arrive.wait()

        trading._sleep = travel
        placing = asyncio.create_task(trading.place_order(account.user_id, order("buy", "1")))
        await on_its_way.wait()
        await trading.on_ticks(tick("104", "105", asks=[("105", "5")]))  # meanwhile
        arrive.set()
        placed = await placing
        assert waited == [0.25]
        assert [(f.price, f.quantity) for f in placed.fills] == [(D(105), D(1))]
