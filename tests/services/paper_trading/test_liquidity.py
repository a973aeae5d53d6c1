"""The venue's book as paper orders leave it (services/paper_trading/liquidity.py), and the
taker's view of it (booking.TakerBooks): every expectation an exact Decimal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import BookLevel, OrderBook, PairRules, Tick, Ticker
from models.enums import OrderSide, OrderType, TimeInForce
from services.paper_trading.booking import TakerBooks
from services.paper_trading.liquidity import ASKS, BIDS, Venue, VenueBook
from services.paper_trading.matching import Order, OrderIndex, RestingFill, execute

SYMBOL = "BTC-USD"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
D = Decimal


def levels(*pairs: tuple[str, str]) -> tuple[BookLevel, ...]:
    return tuple(BookLevel(D(p), D(q)) for p, q in pairs)


def make_book(
    bids: list[tuple[str, str]], asks: list[tuple[str, str]], symbol: str = SYMBOL
) -> OrderBook:
    return OrderBook(symbol, levels(*bids), levels(*asks), T0)


def market_order(order_id: str, side: OrderSide, quantity: str) -> Order:
    return Order(
        order_id, "acct", SYMBOL, side, OrderType.MARKET, TimeInForce.IOC, D(quantity), D(quantity)
    )


def buy(venue_book: VenueBook, quantity: str, order_id: str = "t") -> list[tuple[Decimal, ...]]:
    """A market buy against the venue book, its depth taken; its fills as (price, qty)."""
    execution = execute(
        market_order(order_id, OrderSide.BUY, quantity), venue_book.view(), taker_fee_bps=D(0)
    )
    venue_book.take(OrderSide.SELL, [BookLevel(f.price, f.quantity) for f in execution.fills])
    return [(f.price, f.quantity) for f in execution.fills]


ASKS_3 = make_book(bids=[("99", "5")], asks=[("100", "1"), ("101", "2"), ("102", "3")])


class TestRecovery:
    def test_taken_depth_recovers_by_the_rate_each_step(self) -> None:
        # 100 x 1 and 101 x 1 taken; half of what is missing comes back per step.
        venue_book = Venue(recovery=D("0.5")).advance(ASKS_3)
        assert buy(venue_book, "2") == [(D("100"), D("1")), (D("101"), D("1"))]
        assert venue_book.view().asks == levels(("101", "1"), ("102", "3"))
        venue_book.advance(ASKS_3)
        assert venue_book.view().asks == levels(("100", "0.5"), ("101", "1.5"), ("102", "3"))
        venue_book.advance(ASKS_3)
        assert venue_book.view().asks == levels(("100", "0.75"), ("101", "1.75"), ("102", "3"))
        assert venue_book.consumed(OrderSide.SELL, D("100")) == D("0.25")

    def test_full_recovery_shows_the_fresh_book_every_step(self) -> None:
        venue_book = Venue().advance(ASKS_3)
        buy(venue_book, "6")
        assert venue_book.view().asks == ()
        venue_book.advance(ASKS_3)
        assert venue_book.view().asks == ASKS_3.asks

    def test_remainders_below_the_quantum_are_dropped(self) -> None:
        # 0.3 -> 0.15, rounded down to 0.1 -> 0.05, below one quantum: gone.
        venue = Venue(recovery=D("0.5"), quantum=D("0.1"))
        venue_book = venue.advance(ASKS_3)
        buy(venue_book, "0.3")
        venue_book.advance(ASKS_3)
        assert venue_book.consumed(OrderSide.SELL, D("100")) == D("0.1")
        venue_book.advance(ASKS_3)
        assert venue_book.consumed(OrderSide.SELL, D("100")) == 0
        assert venue_book.view().asks == ASKS_3.asks

    def test_a_smaller_external_level_shows_nothing_rather_than_less_than_zero(self) -> None:
        venue_book = Venue(recovery=D("0.5")).advance(ASKS_3)
        buy(venue_book, "3")  # 100 x 1, 101 x 2: 0.5 and 1 still consumed next step
        venue_book.advance(make_book(bids=[], asks=[("100", "0.4"), ("101", "4")]))
        assert venue_book.view().asks == levels(("101", "3"))
        assert venue_book.available(OrderSide.SELL, D("100")) == 0

    def test_the_step_size_is_the_quantum_when_given(self) -> None:
        venue = Venue(recovery=D("0.5"))
        venue_book = venue.advance(ASKS_3, quantum=D("0.01"))
        buy(venue_book, "0.03")
        venue.advance(ASKS_3)
        assert venue_book.consumed(OrderSide.SELL, D("100")) == D("0.01")  # 0.015 -> 0.01

    @pytest.mark.parametrize("recovery", ["0", "-0.1", "1.01"])
    def test_rejects_a_recovery_outside_zero_to_one(self, recovery: str) -> None:
        with pytest.raises(ValueError, match="recovery"):
            Venue(recovery=D(recovery))


class TestTake:
    def test_a_large_order_moves_the_price_for_the_next_in_the_step(self) -> None:
        venue_book = Venue().advance(ASKS_3)
        assert buy(venue_book, "2", "a") == [(D("100"), D("1")), (D("101"), D("1"))]
        assert buy(venue_book, "2", "b") == [(D("101"), D("1")), (D("102"), D("1"))]

    def test_and_in_the_next_step_while_the_book_recovers(self) -> None:
        # After 100 x 1, 101 x 2, 102 x 1 taken and one step at 0.5: 100 x 0.5, 101 x 1,
        # 102 x 2.5 show; 2 more cost 50 + 101 + 51 = 202 (average 101), not 100.5.
        venue_book = Venue(recovery=D("0.5")).advance(ASKS_3)
        buy(venue_book, "4")
        venue_book.advance(ASKS_3)
        assert buy(venue_book, "2") == [
            (D("100"), D("0.5")),
            (D("101"), D("1")),
            (D("102"), D("0.5")),
        ]

    def test_taking_more_than_is_shown_is_refused_and_takes_nothing(self) -> None:
        venue_book = Venue().advance(ASKS_3)
        with pytest.raises(ValueError, match="more than"):
            venue_book.take(OrderSide.SELL, levels(("100", "1"), ("102", "4")))
        assert venue_book.view().asks == ASKS_3.asks

    def test_levels_away_from_the_touch_can_be_taken(self) -> None:
        venue_book = Venue().advance(ASKS_3)
        venue_book.take(OrderSide.SELL, levels(("102", "1")))
        assert venue_book.view().asks == levels(("100", "1"), ("101", "2"), ("102", "2"))

    def test_a_sell_takes_the_bids(self) -> None:
        venue_book = Venue().advance(ASKS_3)
        taken = venue_book.take(OrderSide.BUY, levels(("99", "2")))
        assert taken.side is OrderSide.BUY
        assert venue_book.view().bids == levels(("99", "3"))
        assert venue_book.view().asks == ASKS_3.asks


class TestGiveBack:
    def test_the_same_step_returns_exactly_what_was_taken(self) -> None:
        venue_book = Venue(recovery=D("0.5")).advance(ASKS_3)
        taken = venue_book.take(OrderSide.SELL, levels(("100", "1"), ("101", "0.5")))
        venue_book.give_back(taken)
        assert venue_book.view().asks == ASKS_3.asks

    def test_later_it_returns_what_recovery_left_of_it_not_the_others_share(self) -> None:
        # a took 0.6 and b 0.4 at 100; one step at 0.5 leaves 0.5 consumed: 0.3 of a's,
        # 0.2 of b's. a gives back its 0.3; b's 0.2 stays.
        venue_book = Venue(recovery=D("0.5")).advance(ASKS_3)
        a = venue_book.take(OrderSide.SELL, levels(("100", "0.6")))
        venue_book.take(OrderSide.SELL, levels(("100", "0.4")))
        venue_book.advance(ASKS_3)
        venue_book.give_back(a)
        assert venue_book.consumed(OrderSide.SELL, D("100")) == D("0.2")
        assert venue_book.available(OrderSide.SELL, D("100")) == D("0.8")

    def test_never_shows_more_than_the_external_book(self) -> None:
        venue_book = Venue(recovery=D("0.5")).advance(ASKS_3)
        taken = venue_book.take(OrderSide.SELL, levels(("100", "1")))
        venue_book.advance(ASKS_3)  # 0.5 consumed
        venue_book.advance(ASKS_3)  # 0.25 consumed
        venue_book.give_back(taken)  # 1 x 0.25 = 0.25: all of it, and no more
        assert venue_book.view().asks == ASKS_3.asks
        assert venue_book.consumed(OrderSide.SELL, D("100")) == 0

    def test_giving_back_twice_returns_once(self) -> None:
        # a and b took 1 each at 101; a given back twice must not return b's too.
        venue_book = Venue().advance(ASKS_3)
        first = venue_book.take(OrderSide.SELL, levels(("100", "1"), ("101", "1")))
        venue_book.take(OrderSide.SELL, levels(("101", "1")))
        venue_book.give_back(first)
        venue_book.give_back(first)
        assert venue_book.view().asks == levels(("100", "1"), ("101", "1"), ("102", "3"))

    def test_the_queue_ahead_at_that_price_comes_back_too(self) -> None:
        book = make_book(bids=[("99", "5")], asks=[("101", "1")])
        venue_book = Venue().advance(book)
        queue = venue_book.join(BIDS, D("99"), "resting")
        taken = venue_book.take(OrderSide.BUY, levels(("99", "3")))
        assert queue.ahead("resting") == D("2")
        venue_book.give_back(taken)
        assert queue.ahead("resting") == D("5")


class TestQueue:
    def test_an_order_joins_behind_what_is_displayed_at_its_price(self) -> None:
        venue_book = Venue().advance(make_book(bids=[("99", "5"), ("98", "7")], asks=[]))
        assert venue_book.join(BIDS, D("98"), "a").ahead("a") == D("7")

    @pytest.mark.parametrize("price", ["99.5", "98.5", "97"])
    def test_nothing_is_ahead_where_nothing_is_displayed(self, price: str) -> None:
        # Inside the spread, between two levels, beyond the deepest level.
        venue_book = Venue().advance(make_book(bids=[("99", "5"), ("98", "7")], asks=[]))
        assert venue_book.join(BIDS, D(price), "a").ahead("a") == 0

    def test_paper_takers_at_the_price_trade_the_queue_ahead(self) -> None:
        venue_book = Venue().advance(make_book(bids=[("99", "5"), ("98", "7")], asks=[]))
        queue = venue_book.join(BIDS, D("99"), "a")
        venue_book.take(OrderSide.BUY, levels(("99", "4")))
        assert queue.ahead("a") == D("1")

    def test_the_queue_ahead_is_capped_when_the_level_shrinks(self) -> None:
        # 5 ahead; the next book shows 2 at 99: at most 2 are still ahead once it stood.
        venue_book = Venue().advance(make_book(bids=[("99", "5"), ("98", "7")], asks=[]))
        queue = venue_book.join(BIDS, D("99"), "a")
        venue_book.advance(make_book(bids=[("99", "2"), ("98", "7")], asks=[]))
        assert queue.ahead("a") == D("5")  # the cap applies once the step is over
        venue_book.advance(make_book(bids=[("99", "9"), ("98", "7")], asks=[]))
        assert queue.ahead("a") == D("2")  # and a level growing again adds nobody ahead
        venue_book.advance(make_book(bids=[("99", "9"), ("98", "7")], asks=[]))
        assert queue.ahead("a") == D("2")

    def test_a_level_gone_inside_the_displayed_range_clears_the_queue(self) -> None:
        venue_book = Venue().advance(make_book(bids=[("99", "5"), ("98", "7")], asks=[]))
        queue = venue_book.join(BIDS, D("99"), "a")
        venue_book.advance(make_book(bids=[("98.5", "5"), ("98", "7")], asks=[]))
        venue_book.advance(make_book(bids=[("98.5", "5"), ("98", "7")], asks=[]))
        assert queue.ahead("a") == 0

    def test_beyond_the_deepest_level_the_queue_ahead_stays(self) -> None:
        venue_book = Venue().advance(make_book(bids=[("99", "5"), ("98", "7")], asks=[]))
        queue = venue_book.join(BIDS, D("98"), "a")
        venue_book.advance(make_book(bids=[("100", "5"), ("99", "7")], asks=[]))
        venue_book.advance(make_book(bids=[("100", "5"), ("99", "7")], asks=[]))
        assert queue.ahead("a") == D("7")

    def test_a_later_order_never_has_less_ahead_than_an_earlier_one(self) -> None:
        # b joins when 2 show at 99: a, ahead of b, cannot have more than 2 ahead either.
        venue_book = Venue().advance(make_book(bids=[("99", "5")], asks=[]))
        queue = venue_book.join(BIDS, D("99"), "a")
        venue_book.advance(make_book(bids=[("99", "2")], asks=[]))
        venue_book.join(BIDS, D("99"), "b")
        assert (queue.ahead("a"), queue.ahead("b")) == (D("2"), D("2"))

    def test_asks_queue_like_bids(self) -> None:
        venue_book = Venue().advance(make_book(bids=[], asks=[("101", "3")]))
        queue = venue_book.join(ASKS, D("101"), "s")
        venue_book.take(OrderSide.SELL, levels(("101", "1")))
        assert queue.ahead("s") == D("2")

    def test_before_any_book_the_first_book_sets_the_queue_ahead(self) -> None:
        # After a restart the index reloads before the first tick.
        venue_book = Venue().book(SYMBOL)
        queue = venue_book.join(BIDS, D("99"), "a")
        assert queue.ahead("a") == 0
        venue_book.advance(make_book(bids=[("99", "6")], asks=[]))
        assert queue.ahead("a") == D("6")

    def test_the_last_order_to_leave_drops_the_queue(self) -> None:
        venue_book = Venue().advance(make_book(bids=[("99", "5")], asks=[]))
        queue = venue_book.join(BIDS, D("99"), "a")
        venue_book.join(BIDS, D("99"), "b")
        assert venue_book.leave(queue, "a") is False
        assert venue_book.leave(queue, "b") is True
        assert venue_book.join(BIDS, D("99"), "c") is not queue


class FakeMarket:
    """The market data service as TakerBooks sees it: rules and a current book."""

    def __init__(self, book: OrderBook, step_size: str = "0.00000001") -> None:
        self.book = book
        self.step_size = D(step_size)
        self.fetched = 0

    def resolve_symbol(self, raw: str) -> str:
        return raw

    def pair_rules(self, symbol: str) -> PairRules:
        return PairRules(symbol, "BTC", "USD", D("0.01"), self.step_size, D(0), D(1000), D(0))

    def ticker(self, symbol: str) -> Ticker:
        raise AssertionError("TakerBooks reads no ticker")

    def order_book(self, symbol: str, depth: int = 20) -> OrderBook:
        self.fetched += 1
        return self.book

    def add_tick_listener(
        self, listener: Callable[[Mapping[str, Tick]], Awaitable[None]]
    ) -> Callable[[], None]:
        raise AssertionError("TakerBooks listens to nothing")


class TestTakerBooks:
    def test_before_any_step_takers_see_the_markets_current_book(self) -> None:
        market = FakeMarket(ASKS_3)
        books = TakerBooks(market)
        assert books.book(SYMBOL) == ASKS_3
        books.take(market_order("a", OrderSide.BUY, "1"), D("20"))
        assert market.fetched == 1

    def test_take_executes_takes_and_give_back_returns(self) -> None:
        books = TakerBooks(FakeMarket(ASKS_3), recovery=D("0.5"))
        books.set_book(SYMBOL, ASKS_3)
        first = books.take(market_order("a", OrderSide.BUY, "2"), D("20"))
        assert first.taken is not None
        assert first.taken.levels == levels(("100", "1"), ("101", "1"))
        second = books.take(market_order("b", OrderSide.BUY, "1"), D("20"))
        assert [(f.price, f.quantity) for f in second.fills] == [(D("101"), D("1"))]
        books.give_back(first)  # refused: its depth is the market's again
        assert books.book(SYMBOL).asks == levels(("100", "1"), ("101", "1"), ("102", "3"))

    def test_recovery_is_per_step_and_rounds_to_the_pairs_step_size(self) -> None:
        books = TakerBooks(FakeMarket(ASKS_3, step_size="0.1"), recovery=D("0.5"))
        books.set_book(SYMBOL, ASKS_3)
        books.take(market_order("a", OrderSide.BUY, "0.3"), D("20"))
        books.set_book(SYMBOL, ASKS_3)
        assert books.book(SYMBOL).asks[0] == BookLevel(D("100"), D("0.9"))  # 0.15 -> 0.1

    def test_an_execution_that_took_nothing_gives_back_nothing(self) -> None:
        books = TakerBooks(FakeMarket(make_book(bids=[], asks=[])))
        execution = books.take(market_order("a", OrderSide.BUY, "1"), D("20"))
        assert execution.taken is None
        books.give_back(execution)

    def test_a_recovery_of_zero_is_refused(self) -> None:
        with pytest.raises(ValueError, match="recovery"):
            TakerBooks(FakeMarket(ASKS_3), recovery=D(0))

    def test_a_shared_venue_keeps_its_recovery(self) -> None:
        venue = Venue(recovery=D("0.25"))
        assert TakerBooks(FakeMarket(ASKS_3), venue=venue).venue is venue
        with pytest.raises(ValueError, match="own recovery"):
            TakerBooks(FakeMarket(ASKS_3), recovery=D("0.5"), venue=venue)


def _resting(order_id: str, side: OrderSide, quantity: int, price: int) -> Order:
    amount = D(quantity)
    return Order(
        order_id,
        "acct",
        SYMBOL,
        side,
        OrderType.LIMIT,
        TimeInForce.GTC,
        amount,
        amount,
        limit_price=D(price),
    )


_Step = tuple[list[int], list[int], int, list[tuple[bool, int, int]], list[tuple[bool, int]]]
_LEVELS = st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=4)
_STEP = st.tuples(
    _LEVELS,  # bid quantities at 99, 98, ...
    _LEVELS,  # ask quantities at 101, 102, ...
    st.integers(min_value=97, max_value=103),  # where the book's touch moves: the mid
    st.lists(  # resting limits added before the step: side, quantity, price
        st.tuples(st.booleans(), st.integers(1, 5), st.integers(96, 104)), max_size=4
    ),
    st.lists(st.tuples(st.booleans(), st.integers(1, 8)), max_size=4),  # takers
)


class TestNoDepthCountedTwice:
    @settings(max_examples=50, deadline=None)
    @given(
        steps=st.lists(_STEP, min_size=1, max_size=5),
        recovery=st.sampled_from([D("1"), D("0.5"), D("0.25")]),
    )
    def test_what_a_step_trades_at_a_price_never_exceeds_what_it_shows(
        self, steps: list[_Step], recovery: Decimal
    ) -> None:
        """Makers and takers of one step together never take more at a price than the
        venue showed there when the step began (nor than the external book)."""
        venue = Venue(recovery=recovery)
        index = OrderIndex(venue)
        count = 0
        for bids, asks, mid, resting, takers in steps:
            book = OrderBook(
                SYMBOL,
                tuple(BookLevel(D(mid - 1 - i), D(q)) for i, q in enumerate(bids)),
                tuple(BookLevel(D(mid + 1 + i), D(q)) for i, q in enumerate(asks)),
                T0,
            )
            venue_book = venue.advance(book)
            shown = {(OrderSide.BUY, lv.price): lv.quantity for lv in venue_book.view().bids}
            shown |= {(OrderSide.SELL, lv.price): lv.quantity for lv in venue_book.view().asks}
            traded: dict[tuple[OrderSide, Decimal], Decimal] = {}
            for is_buy, quantity, price in resting:
                count += 1
                side = OrderSide.BUY if is_buy else OrderSide.SELL
                index.add(_resting(f"r{count}", side, quantity, price))
            events = index.on_market(
                SYMBOL, last=D(mid), bid=D(mid - 1), ask=D(mid + 1), maker_fee_bps=D(0)
            )
            for event in events:
                assert isinstance(event, RestingFill)
                assert event.taken is not None
                for level in event.taken.levels:
                    key = (event.taken.side, level.price)
                    traded[key] = traded.get(key, D(0)) + level.quantity
            for is_buy, quantity in takers:
                count += 1
                side = OrderSide.BUY if is_buy else OrderSide.SELL
                execution = execute(
                    market_order(f"t{count}", side, str(quantity)),
                    venue_book.view(),
                    taker_fee_bps=D(0),
                )
                if not execution.fills:
                    continue
                book_side = OrderSide.SELL if is_buy else OrderSide.BUY
                venue_book.take(
                    book_side, [BookLevel(f.price, f.quantity) for f in execution.fills]
                )
                for fill in execution.fills:
                    key = (book_side, fill.price)
                    traded[key] = traded.get(key, D(0)) + fill.quantity
            for key, amount in traded.items():
                assert amount <= shown.get(key, D(0)), key
                external = book.bids if key[0] is OrderSide.BUY else book.asks
                assert amount <= sum(lv.quantity for lv in external if lv.price == key[1])
