from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import BookLevel, OrderBook, Ticker
from models.enums import Liquidity, OrderSide, OrderType, StopTrigger, TimeInForce
from services.paper_trading.liquidity import Venue
from services.paper_trading.matching import (
    Fill,
    Order,
    OrderIndex,
    Outcome,
    Rejection,
    RestingFill,
    StopTriggered,
    execute,
    fee_for,
    stop_is_triggered,
    trigger_stop,
    walk_book,
)

SYMBOL = "BTC-USD"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
MAKER_BPS = Decimal("10")
TAKER_BPS = Decimal("20")


def d(value: str) -> Decimal:
    return Decimal(value)


def make_book(
    bids: list[tuple[str, str]], asks: list[tuple[str, str]], symbol: str = SYMBOL
) -> OrderBook:
    return OrderBook(
        symbol=symbol,
        bids=tuple(BookLevel(d(p), d(q)) for p, q in bids),
        asks=tuple(BookLevel(d(p), d(q)) for p, q in asks),
        timestamp=T0,
    )


def make_order(
    order_id: str = "o1",
    *,
    side: OrderSide = OrderSide.BUY,
    order_type: OrderType = OrderType.LIMIT,
    tif: TimeInForce = TimeInForce.GTC,
    quantity: str = "1",
    limit: str | None = None,
    stop: str | None = None,
    symbol: str = SYMBOL,
    expires_at: datetime | None = None,
    post_only: bool = False,
    trigger: StopTrigger = StopTrigger.LAST,
) -> Order:
    return Order(
        id=order_id,
        account_id="acct-1",
        symbol=symbol,
        side=side,
        order_type=order_type,
        time_in_force=tif,
        quantity=d(quantity),
        remaining=d(quantity),
        limit_price=d(limit) if limit is not None else None,
        stop_price=d(stop) if stop is not None else None,
        expires_at=expires_at,
        post_only=post_only,
        stop_trigger=trigger,
    )


def levels(*pairs: tuple[str, str]) -> tuple[BookLevel, ...]:
    return tuple(BookLevel(d(p), d(q)) for p, q in pairs)


def tick(
    index: OrderIndex,
    *,
    last: str,
    bid: str,
    ask: str,
    book: OrderBook | None = None,
    symbol: str = SYMBOL,
) -> list[RestingFill | StopTriggered]:
    return index.on_market(
        symbol, last=d(last), bid=d(bid), ask=d(ask), maker_fee_bps=MAKER_BPS, book=book
    )


# Three ask levels 100 x 1, 101 x 2, 102 x 3; bids 99 x 1, 98 x 1, 97 x 5.
DEEP = make_book(
    bids=[("99", "1"), ("98", "1"), ("97", "5")],
    asks=[("100", "1"), ("101", "2"), ("102", "3")],
)


class TestOrder:
    def test_rejects_limit_without_price(self) -> None:
        with pytest.raises(ValueError, match="needs a limit_price"):
            make_order(order_type=OrderType.LIMIT)

    def test_rejects_market_with_price(self) -> None:
        with pytest.raises(ValueError, match="takes no limit_price"):
            make_order(order_type=OrderType.MARKET, limit="100")

    def test_rejects_remaining_above_quantity(self) -> None:
        with pytest.raises(ValueError, match="remaining"):
            Order(
                "o", "a", SYMBOL, OrderSide.BUY, OrderType.MARKET, TimeInForce.IOC, d("1"), d("2")
            )

    def test_rejects_non_positive_prices(self) -> None:
        with pytest.raises(ValueError, match="stop_price must be positive"):
            make_order(order_type=OrderType.STOP, stop="0")

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"order_type": OrderType.MARKET, "post_only": True}, "only a resting limit"),
            ({"limit": "100", "tif": TimeInForce.IOC, "post_only": True}, "only a resting limit"),
            ({"limit": "100", "trigger": StopTrigger.BID}, "only a stop takes"),
            ({"limit": "100", "tif": TimeInForce.GTD}, "needs an expires_at"),
            ({"limit": "100", "expires_at": T0}, "only DAY and GTD"),
            (
                {"limit": "100", "tif": TimeInForce.GTD, "expires_at": datetime(2024, 1, 1)},
                "timezone-aware",
            ),
        ],
    )
    def test_rejects_inconsistent_options(self, options: dict[str, Any], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            make_order(**options)


class TestWalkBook:
    def test_market_buy_pays_the_ask(self) -> None:
        # Touch: bid 99, ask 100. Buying 0.5 takes 0.5 at the ask, not at the mid.
        walk = walk_book(DEEP, OrderSide.BUY, d("0.5"))
        assert walk.fills == levels(("100", "0.5"))
        assert walk.notional == d("50.0")
        assert walk.average_price == d("100")

    def test_market_sell_gets_the_bid(self) -> None:
        walk = walk_book(DEEP, OrderSide.SELL, d("0.5"))
        assert walk.fills == levels(("99", "0.5"))
        assert walk.notional == d("49.5")
        assert walk.average_price == d("99")

    def test_buy_walks_three_levels_at_the_exact_average(self) -> None:
        # 100 x 1 + 101 x 2 + 102 x 0.5 = 100 + 202 + 51 = 353 for 3.5;
        # 353 / 3.5 = 100.857142857142... to 28 significant digits.
        walk = walk_book(DEEP, OrderSide.BUY, d("3.5"))
        assert walk.fills == levels(("100", "1"), ("101", "2"), ("102", "0.5"))
        assert walk.filled == d("3.5")
        assert walk.remaining == 0
        assert walk.notional == d("353.0")
        assert walk.average_price == d("100.8571428571428571428571429")

    def test_sell_walks_the_bids_downward(self) -> None:
        # 99 x 1 + 98 x 1 + 97 x 0.5 = 245.5 for 2.5 -> 98.2
        walk = walk_book(DEEP, OrderSide.SELL, d("2.5"))
        assert walk.fills == levels(("99", "1"), ("98", "1"), ("97", "0.5"))
        assert walk.notional == d("245.5")
        assert walk.average_price == d("98.2")

    def test_thin_book_fills_partially(self) -> None:
        # 6 on offer: 100 + 202 + 306 = 608; 4 of the 10 asked stay unfilled.
        walk = walk_book(DEEP, OrderSide.BUY, d("10"))
        assert walk.filled == d("6")
        assert walk.remaining == d("4")
        assert walk.notional == d("608")
        assert walk.average_price == d("101.3333333333333333333333333")

    def test_buy_limit_caps_the_walk(self) -> None:
        walk = walk_book(DEEP, OrderSide.BUY, d("5"), limit_price=d("101"))
        assert walk.fills == levels(("100", "1"), ("101", "2"))
        assert walk.remaining == d("2")

    def test_sell_limit_caps_the_walk(self) -> None:
        walk = walk_book(DEEP, OrderSide.SELL, d("5"), limit_price=d("98.5"))
        assert walk.fills == levels(("99", "1"))
        assert walk.remaining == d("4")

    def test_empty_side_fills_nothing(self) -> None:
        walk = walk_book(make_book(bids=[("99", "1")], asks=[]), OrderSide.BUY, d("1"))
        assert walk.fills == ()
        assert walk.remaining == d("1")
        assert walk.average_price is None

    def test_skips_empty_levels(self) -> None:
        book = make_book(bids=[], asks=[("100", "0"), ("101", "1")])
        assert walk_book(book, OrderSide.BUY, d("1")).fills == levels(("101", "1"))

    @given(
        quantities=st.lists(st.integers(min_value=0, max_value=50), min_size=0, max_size=8),
        wanted=st.integers(min_value=1, max_value=200),
        limit=st.one_of(st.none(), st.integers(min_value=95, max_value=110)),
    )
    def test_conserves_quantity_and_respects_the_limit(
        self, quantities: list[int], wanted: int, limit: int | None
    ) -> None:
        asks = tuple(BookLevel(Decimal(100 + i), Decimal(q) / 10) for i, q in enumerate(quantities))
        book = OrderBook(SYMBOL, (), asks, T0)
        quantity = Decimal(wanted) / 10
        limit_price = Decimal(limit) if limit is not None else None
        walk = walk_book(book, OrderSide.BUY, quantity, limit_price=limit_price)
        assert walk.filled + walk.remaining == quantity
        assert sum(f.quantity for f in walk.fills) == walk.filled
        assert sum(f.price * f.quantity for f in walk.fills) == walk.notional
        within = sum(a.quantity for a in asks if limit_price is None or a.price <= limit_price)
        assert walk.filled == min(quantity, within)
        for fill, level in zip(walk.fills, (a for a in asks if a.quantity), strict=False):
            assert fill.price == level.price
            assert fill.quantity <= level.quantity


class TestFees:
    def test_fee_is_notional_times_bps(self) -> None:
        # 353 x 20 / 10000 = 0.706
        assert fee_for(d("353"), TAKER_BPS) == d("0.70600000")

    def test_rounds_to_the_eighth_decimal(self) -> None:
        # 1.23456789 x 10 / 10000 = 0.00123456789 -> 0.00123457
        assert fee_for(d("1.23456789"), MAKER_BPS) == d("0.00123457")

    def test_rounds_half_up(self) -> None:
        # 0.000005 x 10 / 10000 = 0.000000005, exactly half a quantum: up (half-even
        # would give 0); 0.000000004 goes down.
        assert fee_for(d("0.000005"), MAKER_BPS) == d("0.00000001")
        assert fee_for(d("0.000004"), MAKER_BPS) == d("0.00000000")


class TestExecute:
    def test_market_buy_walks_the_book_and_pays_taker_fee_per_fill(self) -> None:
        # 100 x 1 (fee 0.2) + 101 x 2 (202, fee 0.404) + 102 x 0.5 (51, fee 0.102)
        order = make_order(order_type=OrderType.MARKET, tif=TimeInForce.IOC, quantity="3.5")
        execution = execute(order, DEEP, taker_fee_bps=TAKER_BPS)
        assert execution.outcome is Outcome.FILLED
        assert execution.fills == (
            Fill(d("100"), d("1"), d("100"), d("0.2"), Liquidity.TAKER),
            Fill(d("101"), d("2"), d("202"), d("0.404"), Liquidity.TAKER),
            Fill(d("102"), d("0.5"), d("51"), d("0.102"), Liquidity.TAKER),
        )
        assert execution.fees == d("0.706")
        assert execution.notional == d("353")
        assert execution.order.remaining == 0

    def test_market_keeps_what_fills_and_cancels_the_rest(self) -> None:
        # GTC or not, a market order never rests: 6 of 10 fill, 4 are cancelled.
        order = make_order(order_type=OrderType.MARKET, quantity="10")
        execution = execute(order, DEEP, taker_fee_bps=TAKER_BPS)
        assert execution.outcome is Outcome.CANCELLED
        assert execution.filled_quantity == d("6")
        assert execution.order.remaining == d("4")
        assert execution.average_price == d("101.3333333333333333333333333")

    def test_ioc_limit_keeps_the_part_within_its_limit(self) -> None:
        order = make_order(tif=TimeInForce.IOC, quantity="5", limit="101")
        execution = execute(order, DEEP, taker_fee_bps=TAKER_BPS)
        assert execution.outcome is Outcome.CANCELLED
        assert [(f.price, f.quantity) for f in execution.fills] == [
            (d("100"), d("1")),
            (d("101"), d("2")),
        ]
        assert execution.order.remaining == d("2")

    def test_fok_rejected_when_the_limit_leaves_too_little(self) -> None:
        # 6 on offer, but only 3 at or below 101: nothing trades.
        order = make_order(tif=TimeInForce.FOK, quantity="4", limit="101")
        execution = execute(order, DEEP, taker_fee_bps=TAKER_BPS)
        assert execution.outcome is Outcome.REJECTED
        assert execution.fills == ()
        assert execution.order == order

    def test_fok_market_rejected_when_the_book_is_too_thin(self) -> None:
        order = make_order(order_type=OrderType.MARKET, tif=TimeInForce.FOK, quantity="6.01")
        execution = execute(order, DEEP, taker_fee_bps=TAKER_BPS)
        assert execution.outcome is Outcome.REJECTED
        assert execution.fills == ()

    def test_fok_fills_fully_when_enough_is_available(self) -> None:
        # 100 x 1 + 101 x 2 + 102 x 1 = 404 for 4 -> average 101; fees 0.2 + 0.404 + 0.204
        order = make_order(tif=TimeInForce.FOK, quantity="4", limit="102")
        execution = execute(order, DEEP, taker_fee_bps=TAKER_BPS)
        assert execution.outcome is Outcome.FILLED
        assert execution.filled_quantity == d("4")
        assert execution.average_price == d("101")
        assert execution.fees == d("0.808")

    def test_crossing_limit_fills_as_taker_then_rests_the_rest(self) -> None:
        order = make_order(quantity="5", limit="101")
        execution = execute(order, DEEP, taker_fee_bps=TAKER_BPS)
        assert execution.outcome is Outcome.RESTING
        assert execution.filled_quantity == d("3")
        assert all(f.liquidity is Liquidity.TAKER for f in execution.fills)
        assert execution.order.remaining == d("2")

        # The rest rests at 101; when the ask comes down to 101 it fills as maker at 101:
        # 2 x 101 = 202, maker fee 202 x 10 / 10000 = 0.202.
        index = OrderIndex()
        index.add(execution.order)
        events = tick(index, last="101", bid="100", ask="101")
        assert events == [
            RestingFill(
                order=Order(
                    "o1",
                    "acct-1",
                    SYMBOL,
                    OrderSide.BUY,
                    OrderType.LIMIT,
                    TimeInForce.GTC,
                    d("5"),
                    d("0"),
                    limit_price=d("101"),
                ),
                fill=Fill(d("101"), d("2"), d("202"), d("0.202"), Liquidity.MAKER),
            )
        ]
        assert len(index) == 0

    def test_limit_that_does_not_cross_rests_untouched(self) -> None:
        order = make_order(quantity="1", limit="99.5")
        execution = execute(order, DEEP, taker_fee_bps=TAKER_BPS)
        assert execution.outcome is Outcome.RESTING
        assert execution.fills == ()
        assert execution.order is order

    def test_sell_limit_crosses_the_bids(self) -> None:
        order = make_order(side=OrderSide.SELL, tif=TimeInForce.IOC, quantity="3", limit="98")
        execution = execute(order, DEEP, taker_fee_bps=TAKER_BPS)
        assert [(f.price, f.quantity) for f in execution.fills] == [
            (d("99"), d("1")),
            (d("98"), d("1")),
        ]
        assert execution.order.remaining == d("1")

    def test_a_stop_must_be_triggered_first(self) -> None:
        order = make_order(order_type=OrderType.STOP, stop="105")
        with pytest.raises(ValueError, match="only once triggered"):
            execute(order, DEEP, taker_fee_bps=TAKER_BPS)

    def test_fok_says_why_it_was_rejected(self) -> None:
        order = make_order(tif=TimeInForce.FOK, quantity="7", limit="102")
        execution = execute(order, DEEP, taker_fee_bps=TAKER_BPS)
        assert (execution.outcome, execution.rejection) == (
            Outcome.REJECTED,
            Rejection.FILL_OR_KILL,
        )

    def test_post_only_that_would_take_is_rejected_with_nothing_traded(self) -> None:
        order = make_order(quantity="1", limit="100", post_only=True)
        execution = execute(order, DEEP, taker_fee_bps=TAKER_BPS)
        assert execution.outcome is Outcome.REJECTED
        assert execution.rejection is Rejection.POST_ONLY
        assert execution.fills == ()
        assert execution.order is order

    def test_post_only_inside_the_spread_rests_whole(self) -> None:
        order = make_order(side=OrderSide.SELL, quantity="2", limit="99.5", post_only=True)
        execution = execute(order, DEEP, taker_fee_bps=TAKER_BPS)
        assert (execution.outcome, execution.rejection, execution.fills) == (
            Outcome.RESTING,
            None,
            (),
        )
        assert execution.order is order

    def test_post_only_is_not_refused_by_an_empty_level(self) -> None:
        book = make_book(bids=[("99", "1")], asks=[("100", "0"), ("101", "1")])
        order = make_order(quantity="1", limit="100", post_only=True)
        assert execute(order, book, taker_fee_bps=TAKER_BPS).outcome is Outcome.RESTING

    @pytest.mark.parametrize("tif", [TimeInForce.DAY, TimeInForce.GTD])
    def test_day_and_gtd_limits_rest_what_does_not_cross(self, tif: TimeInForce) -> None:
        order = make_order(quantity="5", limit="101", tif=tif, expires_at=T0 + timedelta(hours=1))
        execution = execute(order, DEEP, taker_fee_bps=TAKER_BPS)
        assert execution.outcome is Outcome.RESTING
        assert execution.filled_quantity == d("3")
        assert execution.order.remaining == d("2")
        assert execution.order.expires_at == T0 + timedelta(hours=1)

    def test_a_day_market_order_never_rests(self) -> None:
        order = make_order(
            order_type=OrderType.MARKET, tif=TimeInForce.DAY, quantity="10", expires_at=T0
        )
        execution = execute(order, DEEP, taker_fee_bps=TAKER_BPS)
        assert execution.outcome is Outcome.CANCELLED
        assert execution.order.remaining == d("4")

    def test_rejects_a_book_of_another_symbol(self) -> None:
        order = make_order(order_type=OrderType.MARKET, symbol="ETH-USD")
        with pytest.raises(ValueError, match="is for ETH-USD"):
            execute(order, DEEP, taker_fee_bps=TAKER_BPS)


class TestStops:
    def test_buy_stop_triggers_at_or_above(self) -> None:
        order = make_order(order_type=OrderType.STOP, stop="105")
        assert not stop_is_triggered(order, d("104.99"))
        assert stop_is_triggered(order, d("105"))

    def test_sell_stop_triggers_at_or_below(self) -> None:
        order = make_order(side=OrderSide.SELL, order_type=OrderType.STOP, stop="95")
        assert not stop_is_triggered(order, d("95.01"))
        assert stop_is_triggered(order, d("95"))

    def test_trigger_converts_stop_limit_to_limit(self) -> None:
        order = make_order(order_type=OrderType.STOP_LIMIT, stop="105", limit="106")
        converted = trigger_stop(order)
        assert converted.order_type is OrderType.LIMIT
        assert converted.limit_price == d("106")
        assert converted.stop_price is None

    def test_a_stop_on_the_bid_or_the_ask_watches_that_price(self) -> None:
        on_bid = make_order(order_type=OrderType.STOP, stop="105", trigger=StopTrigger.BID)
        assert not stop_is_triggered(on_bid, d("106"), bid=d("104.99"), ask=d("105.01"))
        assert stop_is_triggered(on_bid, d("100"), bid=d("105"), ask=d("105.5"))
        on_ask = make_order(
            side=OrderSide.SELL, order_type=OrderType.STOP, stop="95", trigger=StopTrigger.ASK
        )
        assert not stop_is_triggered(on_ask, d("94"), bid=d("94"), ask=d("95.01"))
        assert stop_is_triggered(on_ask, d("96"), bid=d("94.9"), ask=d("95"))

    def test_a_stop_on_the_bid_needs_the_bid(self) -> None:
        order = make_order(order_type=OrderType.STOP, stop="105", trigger=StopTrigger.BID)
        with pytest.raises(ValueError, match="triggers on the bid"):
            stop_is_triggered(order, d("105"))

    def test_a_triggered_stop_keeps_no_trigger(self) -> None:
        order = make_order(order_type=OrderType.STOP, stop="105", trigger=StopTrigger.ASK)
        converted = trigger_stop(order)
        assert (converted.order_type, converted.stop_trigger) == (
            OrderType.MARKET,
            StopTrigger.LAST,
        )


class TestOrderIndexLimits:
    def test_buy_limit_fills_as_maker_when_the_ask_reaches_it(self) -> None:
        # 2 x 100 = 200, maker fee 200 x 10 / 10000 = 0.2
        index = OrderIndex()
        index.add(make_order(quantity="2", limit="100"))
        assert tick(index, last="100.5", bid="100.01", ask="100.02") == []
        events = tick(index, last="100.5", bid="99.99", ask="100")
        assert len(events) == 1
        event = events[0]
        assert isinstance(event, RestingFill)
        assert event.fill == Fill(d("100"), d("2"), d("200"), d("0.2"), Liquidity.MAKER)
        assert event.order.remaining == 0
        assert len(index) == 0

    def test_fills_at_its_limit_when_the_market_trades_through(self) -> None:
        index = OrderIndex()
        index.add(make_order(quantity="2", limit="100"))
        events = tick(index, last="97", bid="97.5", ask="98")
        assert [(e.fill.price, e.fill.quantity) for e in events if isinstance(e, RestingFill)] == [
            (d("100"), d("2"))
        ]

    def test_sell_limit_fills_when_the_bid_reaches_it(self) -> None:
        # 105 x 1 = 105, maker fee 0.105
        index = OrderIndex()
        index.add(make_order(side=OrderSide.SELL, quantity="1", limit="105"))
        assert tick(index, last="105", bid="104.99", ask="105.01") == []
        (event,) = tick(index, last="106", bid="105.5", ask="106")
        assert isinstance(event, RestingFill)
        assert event.fill == Fill(d("105"), d("1"), d("105"), d("0.105"), Liquidity.MAKER)

    def test_book_depth_caps_the_fill_and_the_rest_keeps_resting(self) -> None:
        # Asks at or below 100: 99 x 1 + 100 x 2 = 3 of the 5 wanted, at 100 (300, fee 0.3).
        index = OrderIndex()
        index.add(make_order(quantity="5", limit="100"))
        book = make_book(bids=[("98", "5")], asks=[("99", "1"), ("100", "2"), ("101", "10")])
        (event,) = tick(index, last="99", bid="98", ask="99", book=book)
        assert isinstance(event, RestingFill)
        assert event.fill == Fill(d("100"), d("3"), d("300"), d("0.3"), Liquidity.MAKER)
        assert event.order.remaining == d("2")
        resting = index.get("o1")
        assert resting is not None
        assert resting.remaining == d("2")
        assert index.count(SYMBOL) == 1

    def test_depth_is_shared_in_price_time_priority(self) -> None:
        # Asks 99 x 3, 100 x 2. Priority: b (101) takes 2 at 99; a (100, older than c)
        # takes 99 x 1 + 100 x 1; c (100) gets the last 100 x 1 of its 2.
        index = OrderIndex()
        index.add(make_order("a", quantity="2", limit="100"))
        index.add(make_order("b", quantity="2", limit="101"))
        index.add(make_order("c", quantity="2", limit="100"))
        book = make_book(bids=[], asks=[("99", "3"), ("100", "2")])
        events = tick(index, last="99", bid="98", ask="99", book=book)
        assert [
            (e.order.id, e.fill.price, e.fill.quantity, e.order.remaining)
            for e in events
            if isinstance(e, RestingFill)
        ] == [
            ("b", d("101"), d("2"), d("0")),
            ("a", d("100"), d("2"), d("0")),
            ("c", d("100"), d("1"), d("1")),
        ]
        assert len(index) == 1

    def test_an_order_left_without_depth_keeps_its_priority(self) -> None:
        # a (older) is filled 1 of 2 and c gets nothing; on the next update a goes first.
        index = OrderIndex()
        index.add(make_order("a", quantity="2", limit="100"))
        index.add(make_order("c", quantity="2", limit="100"))
        thin = make_book(bids=[], asks=[("100", "1")])
        first = tick(index, last="100", bid="99", ask="100", book=thin)
        assert [(e.order.id, e.fill.quantity) for e in first if isinstance(e, RestingFill)] == [
            ("a", d("1"))
        ]
        second = tick(index, last="100", bid="99", ask="100", book=thin)
        assert [(e.order.id, e.fill.quantity) for e in second if isinstance(e, RestingFill)] == [
            ("a", d("1"))
        ]

    def test_price_then_time_priority_orders_the_events(self) -> None:
        index = OrderIndex()
        index.add(make_order("a", quantity="1", limit="100"))
        index.add(make_order("b", quantity="1", limit="101"))
        index.add(make_order("c", quantity="1", limit="100"))
        index.add(make_order("s1", side=OrderSide.SELL, quantity="1", limit="99"))
        index.add(make_order("s2", side=OrderSide.SELL, quantity="1", limit="98"))
        # A locked quote at 99.5 reaches every order: the buys best price first (older
        # first at 100), then the sells best (lowest) price first.
        events = tick(index, last="99.5", bid="99.5", ask="99.5")
        assert [e.order.id for e in events] == ["b", "a", "c", "s2", "s1"]

    def test_on_ticker_uses_the_tickers_prices(self) -> None:
        index = OrderIndex()
        index.add(make_order(quantity="1", limit="100"))
        ticker = Ticker(SYMBOL, d("99"), d("100"), d("99.5"), d("0"), d("0"), d("0"), T0)
        assert len(index.on_ticker(ticker, maker_fee_bps=MAKER_BPS)) == 1

    def test_ignores_other_symbols(self) -> None:
        index = OrderIndex()
        index.add(make_order(quantity="1", limit="100"))
        assert tick(index, last="90", bid="90", ask="90", symbol="ETH-USD") == []
        assert len(index) == 1

    def test_rejects_a_book_of_another_symbol(self) -> None:
        index = OrderIndex()
        index.add(make_order(quantity="1", limit="100"))
        book = make_book(bids=[], asks=[("99", "1")], symbol="ETH-USD")
        with pytest.raises(ValueError, match="book is for ETH-USD"):
            tick(index, last="99", bid="98", ask="99", book=book)


class TestOrderIndexStops:
    def test_buy_stop_triggers_on_last_and_becomes_market(self) -> None:
        index = OrderIndex()
        index.add(make_order(order_type=OrderType.STOP, quantity="2", stop="105"))
        # The ask above the stop does not trigger it: stops watch the last price.
        assert tick(index, last="104.99", bid="104.98", ask="105.5") == []
        events = tick(index, last="105", bid="104.99", ask="105.01")
        assert events == [
            StopTriggered(
                order=make_order(order_type=OrderType.MARKET, quantity="2"),
                stop_price=d("105"),
                last_price=d("105"),
            )
        ]
        assert len(index) == 0
        # The caller executes it against the book: 100 x 1 + 101 x 1.
        (event,) = events
        assert isinstance(event, StopTriggered)
        execution = execute(event.order, DEEP, taker_fee_bps=TAKER_BPS)
        assert execution.notional == d("201")

    def test_sell_stop_triggers_at_or_below(self) -> None:
        index = OrderIndex()
        index.add(make_order(side=OrderSide.SELL, order_type=OrderType.STOP, stop="95"))
        assert tick(index, last="95.01", bid="95", ask="95.02") == []
        (event,) = tick(index, last="94", bid="93.99", ask="94.01")
        assert isinstance(event, StopTriggered)
        assert event.order.order_type is OrderType.MARKET
        assert event.last_price == d("94")

    def test_stop_limit_becomes_limit(self) -> None:
        index = OrderIndex()
        index.add(make_order(order_type=OrderType.STOP_LIMIT, stop="105", limit="106"))
        (event,) = tick(index, last="105.5", bid="105.4", ask="105.6")
        assert isinstance(event, StopTriggered)
        assert event.order == make_order(limit="106")
        assert event.stop_price == d("105")

    def test_triggers_in_stop_then_time_priority(self) -> None:
        # A rise to 104 passes 101 before 103: lowest buy stop first, then the oldest.
        index = OrderIndex()
        index.add(make_order("high", order_type=OrderType.STOP, stop="103"))
        index.add(make_order("low-old", order_type=OrderType.STOP, stop="101"))
        index.add(make_order("low-new", order_type=OrderType.STOP, stop="101"))
        index.add(make_order("above", order_type=OrderType.STOP, stop="104.01"))
        events = tick(index, last="104", bid="103.99", ask="104.01")
        assert [e.order.id for e in events] == ["low-old", "low-new", "high"]
        assert index.count(SYMBOL) == 1

    def test_each_stop_triggers_on_its_own_price(self) -> None:
        index = OrderIndex()
        for trigger in StopTrigger:
            index.add(
                make_order(f"buy-{trigger}", order_type=OrderType.STOP, stop="105", trigger=trigger)
            )
            index.add(
                make_order(
                    f"sell-{trigger}",
                    side=OrderSide.SELL,
                    order_type=OrderType.STOP,
                    stop="95",
                    trigger=trigger,
                )
            )

        def fired(*, last: str, bid: str, ask: str) -> list[tuple[str, Decimal]]:
            return [
                (e.order.id, e.last_price)
                for e in tick(index, last=last, bid=bid, ask=ask)
                if isinstance(e, StopTriggered)
            ]

        assert fired(last="104", bid="104.5", ask="105") == [("buy-ask", d("105"))]
        assert fired(last="106", bid="104.9", ask="105.1") == [("buy-last", d("106"))]
        assert fired(last="104", bid="105", ask="105.2") == [("buy-bid", d("105"))]
        assert fired(last="96", bid="95", ask="95.5") == [("sell-bid", d("95"))]
        assert fired(last="96", bid="94", ask="95") == [("sell-ask", d("95"))]
        assert fired(last="95", bid="94", ask="95") == [("sell-last", d("95"))]
        assert len(index) == 0

    def test_stops_of_every_trigger_come_in_stop_then_time_priority(self) -> None:
        index = OrderIndex()
        index.add(make_order("a", order_type=OrderType.STOP, stop="103"))
        index.add(make_order("b", order_type=OrderType.STOP, stop="101", trigger=StopTrigger.BID))
        index.add(make_order("c", order_type=OrderType.STOP, stop="101", trigger=StopTrigger.ASK))
        index.add(make_order("s1", side=OrderSide.SELL, order_type=OrderType.STOP, stop="104"))
        index.add(
            make_order(
                "s2",
                side=OrderSide.SELL,
                order_type=OrderType.STOP,
                stop="106",
                trigger=StopTrigger.BID,
            )
        )
        events = tick(index, last="104", bid="104", ask="104.5")
        assert [e.order.id for e in events] == ["b", "c", "a", "s2", "s1"]


class TestOrderIndexBookkeeping:
    def test_cancel_removes_the_order(self) -> None:
        index = OrderIndex()
        index.add(make_order(quantity="1", limit="100"))
        assert index.cancel("o1") is True
        assert index.cancel("o1") is False
        assert tick(index, last="90", bid="90", ask="90") == []
        assert len(index) == 0
        assert "o1" not in index

    def test_a_cancelled_stop_does_not_trigger(self) -> None:
        index = OrderIndex()
        index.add(make_order("a", order_type=OrderType.STOP, stop="105"))
        index.add(make_order("b", order_type=OrderType.STOP, stop="106"))
        assert index.cancel("a") is True
        assert [e.order.id for e in tick(index, last="110", bid="109", ask="111")] == ["b"]

    def test_cancel_of_unknown_order_is_false(self) -> None:
        assert OrderIndex().cancel("nope") is False

    def test_a_cancelled_id_added_again_rests_at_its_new_price(self) -> None:
        # The old entry at 100 is stale and must not fill the new order resting at 90.
        index = OrderIndex()
        index.add(make_order(quantity="1", limit="100"))
        index.cancel("o1")
        index.add(make_order(quantity="1", limit="90"))
        assert tick(index, last="95", bid="94", ask="95") == []
        assert [e.order.id for e in tick(index, last="90", bid="89", ask="90")] == ["o1"]

    def test_many_cancels_leave_the_rest_intact(self) -> None:
        # 600 buys at 1..600; cancelling 1..500 drops their price levels on the way.
        index = OrderIndex()
        for i in range(1, 601):
            index.add(make_order(f"o{i}", quantity="1", limit=str(i)))
        for i in range(1, 501):
            index.cancel(f"o{i}")
        assert len(index) == 100
        events = tick(index, last="550", bid="549", ask="550")
        assert [e.order.id for e in events] == [f"o{i}" for i in range(600, 549, -1)]
        assert len(index) == 49

    def test_counts_per_symbol(self) -> None:
        index = OrderIndex()
        index.add(make_order("a", quantity="1", limit="100"))
        index.add(make_order("b", order_type=OrderType.STOP, stop="120"))
        index.add(make_order("c", quantity="1", limit="10", symbol="ETH-USD"))
        assert len(index) == 3
        assert index.count(SYMBOL) == 2
        assert index.count("ETH-USD") == 1
        assert index.count("SOL-USD") == 0

    def test_reload_restores_orders_in_the_given_priority(self) -> None:
        index = OrderIndex()
        index.add(make_order("stale", quantity="1", limit="50"))
        index.reload([make_order("b", quantity="1", limit="100"), make_order("a", limit="100")])
        assert len(index) == 2
        assert "stale" not in index
        assert [e.order.id for e in tick(index, last="100", bid="99", ask="100")] == ["b", "a"]

    def test_failed_reload_changes_nothing(self) -> None:
        index = OrderIndex()
        index.add(make_order("kept", quantity="1", limit="100"))
        with pytest.raises(ValueError, match="only GTC, DAY and GTD limit orders rest"):
            index.reload(
                [make_order("x", limit="1"), make_order("y", tif=TimeInForce.IOC, limit="1")]
            )
        assert len(index) == 1
        assert "kept" in index
        assert "x" not in index

    def test_rejects_a_duplicate_id(self) -> None:
        index = OrderIndex()
        index.add(make_order(limit="100"))
        with pytest.raises(ValueError, match="already in the index"):
            index.add(make_order(limit="101"))

    def test_rejects_orders_that_cannot_rest(self) -> None:
        index = OrderIndex()
        with pytest.raises(ValueError, match="cannot rest"):
            index.add(make_order(order_type=OrderType.MARKET))
        with pytest.raises(ValueError, match="only GTC"):
            index.add(make_order(tif=TimeInForce.FOK, limit="100"))
        assert len(index) == 0


class TestOrderIndexExpiry:
    def test_expire_removes_and_returns_what_is_due_earliest_first(self) -> None:
        index = OrderIndex()
        hour = timedelta(hours=1)
        index.add(make_order("late", limit="100", tif=TimeInForce.GTD, expires_at=T0 + 2 * hour))
        index.add(make_order("day", limit="99", tif=TimeInForce.DAY, expires_at=T0 + hour))
        index.add(make_order("gtc", limit="98"))
        index.add(
            make_order(
                "stop",
                order_type=OrderType.STOP,
                stop="120",
                tif=TimeInForce.GTD,
                expires_at=T0 + hour,
            )
        )
        assert index.expire(T0) == []
        assert [o.id for o in index.expire(T0 + hour)] == ["day", "stop"]
        assert "day" not in index
        assert "stop" not in index
        assert [o.id for o in index.expire(T0 + 24 * hour)] == ["late"]
        assert len(index) == 1
        assert "gtc" in index

    def test_an_order_gone_otherwise_does_not_expire(self) -> None:
        index = OrderIndex()
        gtd = TimeInForce.GTD
        index.add(make_order("cancelled", limit="100", tif=gtd, expires_at=T0))
        index.add(make_order("filled", limit="101", tif=gtd, expires_at=T0))
        index.add(
            make_order("triggered", order_type=OrderType.STOP, stop="101", tif=gtd, expires_at=T0)
        )
        index.cancel("cancelled")
        tick(index, last="101", bid="100.5", ask="101")
        assert len(index) == 0
        assert index.expire(T0) == []

    def test_an_expired_limit_fills_no_more(self) -> None:
        index = OrderIndex()
        index.add(make_order(limit="100", tif=TimeInForce.GTD, expires_at=T0))
        assert [o.id for o in index.expire(T0 + timedelta(seconds=1))] == ["o1"]
        assert tick(index, last="90", bid="90", ask="90") == []

    def test_a_day_order_needs_its_end_to_rest(self) -> None:
        with pytest.raises(ValueError, match="needs expires_at"):
            OrderIndex().add(make_order(limit="100", tif=TimeInForce.DAY))


def on_venue(recovery: str = "1") -> tuple[Venue, OrderIndex]:
    venue = Venue(recovery=d(recovery))
    return venue, OrderIndex(venue)


def step(
    venue: Venue, index: OrderIndex, bids: list[tuple[str, str]], asks: list[tuple[str, str]]
) -> list[tuple[str, Decimal, Decimal, Decimal]]:
    """A market step: the venue gets the book, then the index its touch; the resting fills
    as (order id, price, quantity, remaining)."""
    venue.advance(make_book(bids, asks))
    events = tick(index, last=bids[0][0], bid=bids[0][0], ask=asks[0][0])
    return [
        (e.order.id, e.fill.price, e.fill.quantity, e.order.remaining)
        for e in events
        if isinstance(e, RestingFill)
    ]


def take(venue: Venue, side: OrderSide, quantity: str) -> list[tuple[Decimal, Decimal]]:
    """A taker's market order against the venue's book, its depth taken."""
    book = venue.book(SYMBOL)
    order = make_order(
        "taker", side=side, order_type=OrderType.MARKET, tif=TimeInForce.IOC, quantity=quantity
    )
    execution = execute(order, book.view(), taker_fee_bps=TAKER_BPS)
    opposing = OrderSide.SELL if side is OrderSide.BUY else OrderSide.BUY
    book.take(opposing, [BookLevel(f.price, f.quantity) for f in execution.fills])
    return [(f.price, f.quantity) for f in execution.fills]


class TestOrderIndexOnTheVenue:
    def test_the_queue_ahead_trades_before_the_order(self) -> None:
        # 5 bid at 100 when it rests; the next step's 6 asked at 100 go to those 5 first.
        venue, index = on_venue()
        assert step(venue, index, [("100", "5"), ("99", "5")], [("101", "5")]) == []
        index.add(make_order(quantity="2", limit="100"))
        assert index.queue_ahead("o1") == d("5")
        fills = step(venue, index, [("99", "3")], [("100", "6"), ("101", "5")])
        assert fills == [("o1", d("100"), d("1"), d("1"))]
        assert index.queue_ahead("o1") == 0
        assert venue.book(SYMBOL).view().asks == levels(("101", "5"))  # 100 is all gone
        assert step(venue, index, [("99", "3")], [("100", "6"), ("101", "5")]) == [
            ("o1", d("100"), d("1"), d("0"))
        ]

    def test_an_order_the_flow_does_not_reach_keeps_its_place(self) -> None:
        venue, index = on_venue()
        step(venue, index, [("100", "5")], [("101", "5")])
        index.add(make_order(quantity="2", limit="100"))
        assert step(venue, index, [("99", "3")], [("100", "3"), ("101", "5")]) == []
        assert index.queue_ahead("o1") == d("2")
        assert index.get("o1") == make_order(quantity="2", limit="100")

    def test_a_shrinking_level_brings_the_order_forward(self) -> None:
        # 5 ahead; the level then shows 1: at most 1 is ahead when asks reach 100.
        venue, index = on_venue()
        step(venue, index, [("100", "5")], [("101", "5")])
        index.add(make_order(quantity="2", limit="100"))
        step(venue, index, [("100", "1"), ("99", "5")], [("101", "5")])
        assert step(venue, index, [("99", "3")], [("100", "2"), ("101", "5")]) == [
            ("o1", d("100"), d("1"), d("1"))
        ]

    def test_paper_orders_at_one_price_queue_in_time_priority(self) -> None:
        # 2 displayed ahead of both; 3 arrive: 2 to the displayed, 1 to a, none to b.
        venue, index = on_venue()
        step(venue, index, [("100", "2")], [("101", "5")])
        index.add(make_order("a", quantity="1", limit="100"))
        index.add(make_order("b", quantity="1", limit="100"))
        assert step(venue, index, [("99", "1")], [("100", "3"), ("101", "5")]) == [
            ("a", d("100"), d("1"), d("0"))
        ]
        assert step(venue, index, [("99", "1")], [("100", "3"), ("101", "5")]) == [
            ("b", d("100"), d("1"), d("0"))
        ]

    def test_a_sell_queues_on_the_asks(self) -> None:
        venue, index = on_venue()
        step(venue, index, [("99", "5")], [("101", "2"), ("102", "5")])
        index.add(make_order(side=OrderSide.SELL, quantity="3", limit="101"))
        assert index.queue_ahead("o1") == d("2")
        assert step(venue, index, [("101", "3"), ("100", "5")], [("102", "5")]) == [
            ("o1", d("101"), d("1"), d("2"))
        ]

    def test_a_paper_taker_at_the_price_trades_the_queue_ahead(self) -> None:
        venue, index = on_venue()
        step(venue, index, [("100", "3"), ("99", "5")], [("101", "5")])
        index.add(make_order(quantity="1", limit="100"))
        assert take(venue, OrderSide.SELL, "4") == [(d("100"), d("3")), (d("99"), d("1"))]
        assert index.queue_ahead("o1") == 0
        assert step(venue, index, [("99", "5")], [("100", "1"), ("101", "5")]) == [
            ("o1", d("100"), d("1"), d("0"))
        ]

    def test_a_maker_fill_leaves_the_depth_it_took_to_no_taker(self) -> None:
        # The resting bid takes the 1 offered at 100: a market buy in the step pays 101.
        venue, index = on_venue()
        step(venue, index, [("99", "5")], [("101", "5")])
        index.add(make_order(quantity="1", limit="100"))
        assert step(venue, index, [("99", "5")], [("100", "1"), ("101", "5")]) == [
            ("o1", d("100"), d("1"), d("0"))
        ]
        assert take(venue, OrderSide.BUY, "1") == [(d("101"), d("1"))]

    def test_a_taker_leaves_the_depth_it_took_to_the_next_steps_makers(self) -> None:
        # The market buy takes 100 x 2; at recovery 0.5, 1 of it shows again next step.
        venue, index = on_venue(recovery="0.5")
        step(venue, index, [("99", "5")], [("100", "2"), ("101", "5")])
        assert take(venue, OrderSide.BUY, "2") == [(d("100"), d("2"))]
        index.add(make_order(quantity="2", limit="100"))
        assert step(venue, index, [("99", "5")], [("100", "2"), ("101", "5")]) == [
            ("o1", d("100"), d("1"), d("1"))
        ]

    def test_a_maker_fill_carries_the_levels_it_took_to_give_them_back(self) -> None:
        venue, index = on_venue()
        step(venue, index, [("99", "5")], [("101", "5")])
        index.add(make_order(quantity="3", limit="101"))
        venue.advance(make_book([("99", "5")], [("100", "1"), ("101", "1"), ("102", "5")]))
        (event,) = tick(index, last="100", bid="99", ask="100")
        assert isinstance(event, RestingFill)
        assert event.fill == Fill(d("101"), d("2"), d("202"), d("0.202"), Liquidity.MAKER)
        assert event.taken is not None
        assert event.taken.levels == levels(("100", "1"), ("101", "1"))
        assert venue.book(SYMBOL).view().asks == levels(("102", "5"))
        venue.give_back(event.taken)  # its transaction failed: the depth is the market's
        assert venue.book(SYMBOL).view().asks == levels(("100", "1"), ("101", "1"), ("102", "5"))

    def test_reload_puts_each_limit_behind_what_is_displayed_then(self) -> None:
        venue, index = on_venue()
        step(venue, index, [("100", "4")], [("101", "5")])
        index.reload([make_order("a", quantity="1", limit="100")])
        assert index.queue_ahead("a") == d("4")

    def test_with_a_venue_book_a_snapshot_is_refused(self) -> None:
        venue, index = on_venue()
        step(venue, index, [("99", "5")], [("101", "5")])
        index.add(make_order(quantity="1", limit="100"))
        with pytest.raises(ValueError, match="from its venue's book"):
            tick(index, last="100", bid="99", ask="100", book=DEEP)

    def test_the_venue_can_change_only_while_empty(self) -> None:
        index = OrderIndex()
        venue = Venue()
        index.use_venue(venue)
        assert index.venue is venue
        index.add(make_order(limit="100"))
        with pytest.raises(ValueError, match="cannot change venue"):
            index.use_venue(Venue())


def reference_events(
    resting: list[tuple[int, Order]], last: Decimal, bid: Decimal, ask: Decimal
) -> list[tuple[str, str]]:
    """The crossed and triggered orders by a scan of everything, sorted by priority."""

    def price(order: Order) -> Decimal:
        value = order.limit_price if order.order_type is OrderType.LIMIT else order.stop_price
        assert value is not None
        return value

    limits = [(s, o) for s, o in resting if o.order_type is OrderType.LIMIT]
    stops = [(s, o) for s, o in resting if o.order_type is not OrderType.LIMIT]
    groups = [
        sorted(
            ((-price(o), s, o) for s, o in limits if o.side is OrderSide.BUY and price(o) >= ask),
            key=lambda t: (t[0], t[1]),
        ),
        sorted(
            ((price(o), s, o) for s, o in limits if o.side is OrderSide.SELL and price(o) <= bid),
            key=lambda t: (t[0], t[1]),
        ),
        sorted(
            ((price(o), s, o) for s, o in stops if o.side is OrderSide.BUY and price(o) <= last),
            key=lambda t: (t[0], t[1]),
        ),
        sorted(
            ((-price(o), s, o) for s, o in stops if o.side is OrderSide.SELL and price(o) >= last),
            key=lambda t: (t[0], t[1]),
        ),
    ]
    kinds = ["fill", "fill", "stop", "stop"]
    return [(o.id, kind) for kind, group in zip(kinds, groups, strict=True) for _, _, o in group]


ORDER_SPECS = st.tuples(
    st.sampled_from([OrderSide.BUY, OrderSide.SELL]),
    st.sampled_from([OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT]),
    st.integers(min_value=90, max_value=110),
)
ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), ORDER_SPECS),
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=40)),
        st.tuples(st.just("tick"), st.integers(min_value=88, max_value=112)),
    ),
    max_size=60,
)


class TestOrderIndexMatchesAFullScan:
    @settings(max_examples=200, deadline=None)
    @given(actions=ACTIONS)
    def test_same_events_as_scanning_every_order(
        self, actions: list[tuple[str, tuple[OrderSide, OrderType, int] | int]]
    ) -> None:
        index = OrderIndex()
        resting: list[tuple[int, Order]] = []
        for step, (action, arg) in enumerate(actions):
            if action == "add":
                assert isinstance(arg, tuple)
                side, order_type, price = arg
                order = make_order(
                    f"o{step}",
                    side=side,
                    order_type=order_type,
                    limit=str(price) if order_type is not OrderType.STOP else None,
                    stop=str(price) if order_type is not OrderType.LIMIT else None,
                )
                index.add(order)
                resting.append((step, order))
            elif action == "cancel":
                # Mostly a resting order; an unknown id when nothing rests.
                assert isinstance(arg, int)
                target = resting[arg % len(resting)][1].id if resting else "unknown"
                assert index.cancel(target) is bool(resting)
                resting = [(s, o) for s, o in resting if o.id != target]
            else:
                assert isinstance(arg, int)
                last, bid, ask = Decimal(arg), Decimal(arg) - 1, Decimal(arg) + 1
                expected_events = reference_events(resting, last, bid, ask)
                events = index.on_market(
                    SYMBOL, last=last, bid=bid, ask=ask, maker_fee_bps=MAKER_BPS
                )
                got = [
                    (e.order.id, "fill" if isinstance(e, RestingFill) else "stop") for e in events
                ]
                assert got == expected_events
                gone = {order_id for order_id, _ in got}
                resting = [(s, o) for s, o in resting if o.id not in gone]
            assert len(index) == len(resting)
