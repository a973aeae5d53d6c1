"""The venue book's bookkeeping that only its fast paths rely on (services/paper_trading/
liquidity.py): queues capped by price range, the sweep of recovered depth, fees as one
product. Each expectation is worked out here by hand or by the plain formula."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import BookLevel, OrderBook
from models.enums import Liquidity, OrderSide, OrderType, TimeInForce
from services.paper_trading.liquidity import ASKS, BIDS, MONEY_CONTEXT, Venue
from services.paper_trading.matching import FEE_QUANTUM, fee_for, make_fill
from services.paper_trading.taker import Order, with_remaining

SYMBOL = "BTC-USD"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
D = Decimal


def book(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> OrderBook:
    return OrderBook(
        SYMBOL,
        tuple(BookLevel(D(p), D(q)) for p, q in bids),
        tuple(BookLevel(D(p), D(q)) for p, q in asks),
        T0,
    )


class TestQueuesTheBookMovedAwayFrom:
    def test_a_bid_queue_is_capped_again_once_the_book_comes_back(self) -> None:
        venue_book = Venue().advance(book(bids=[("99", "5"), ("98", "7")], asks=[]))
        queue = venue_book.join(BIDS, D("99"), "a")
        # The bids move up: 99 is beyond the deepest level, nothing caps it.
        venue_book.advance(book(bids=[("101", "5"), ("100", "7")], asks=[]))
        venue_book.advance(book(bids=[("101", "5"), ("100", "7")], asks=[]))
        assert queue.ahead("a") == D("5")
        # Back within the range, showing 2 at 99: capped at the end of that step.
        venue_book.advance(book(bids=[("100", "5"), ("99", "2")], asks=[]))
        venue_book.advance(book(bids=[("100", "5"), ("99", "2")], asks=[]))
        assert queue.ahead("a") == D("2")

    def test_an_ask_queue_is_capped_again_once_the_book_comes_back(self) -> None:
        venue_book = Venue().advance(book(bids=[], asks=[("101", "5"), ("102", "7")]))
        queue = venue_book.join(ASKS, D("102"), "s")
        venue_book.advance(book(bids=[], asks=[("99", "5"), ("100", "7")]))
        venue_book.advance(book(bids=[], asks=[("99", "5"), ("100", "7")]))
        assert queue.ahead("s") == D("7")
        # 102 inside the displayed range but not shown: nothing is ahead any more.
        venue_book.advance(book(bids=[], asks=[("101", "5"), ("103", "7")]))
        venue_book.advance(book(bids=[], asks=[("101", "5"), ("103", "7")]))
        assert queue.ahead("s") == 0

    def test_a_new_queue_at_a_price_left_empty_is_capped_like_the_first(self) -> None:
        venue_book = Venue().advance(book(bids=[("99", "5")], asks=[]))
        first = venue_book.join(BIDS, D("99"), "a")
        assert venue_book.leave(first, "a")  # the queue is dropped while it waits
        second = venue_book.join(BIDS, D("99"), "b")
        venue_book.advance(book(bids=[("99", "3")], asks=[]))
        venue_book.advance(book(bids=[("99", "3")], asks=[]))
        assert second.ahead("b") == D("3")


class TestSweep:
    def test_depth_still_recovering_survives_the_sweep(self) -> None:
        # 1.000 taken at 100, 1% refilled per step: after k steps floor(0.99**k) to 0.001.
        venue = Venue(recovery=D("0.01"), quantum=D("0.001"))
        asks = book(bids=[], asks=[("100", "5")])
        venue_book = venue.advance(asks)
        venue_book.take(OrderSide.SELL, [BookLevel(D("100"), D("1"))])
        for _ in range(130):  # two sweeps (every 64 steps), nobody looking in between
            venue_book.advance(book(bids=[], asks=[("200", "5")]))
        with localcontext(MONEY_CONTEXT):
            left = D("0.99") ** 130
            expected = left - left % D("0.001")
        assert expected == D("0.270")
        assert venue_book.consumed(OrderSide.SELL, D("100")) == expected
        venue_book.advance(asks)  # one more step: floor(0.99**131) = 0.268
        assert venue_book.available(OrderSide.SELL, D("100")) == D("4.732")

    def test_recovered_depth_is_forgotten_and_the_level_shows_whole(self) -> None:
        venue = Venue(recovery=D("0.5"), quantum=D("0.001"))
        venue_book = venue.advance(book(bids=[], asks=[("100", "5")]))
        venue_book.take(OrderSide.SELL, [BookLevel(D("100"), D("1"))])
        for _ in range(64):
            venue_book.advance(book(bids=[], asks=[("200", "5")]))
        venue_book.advance(book(bids=[], asks=[("100", "5")]))
        assert venue_book.view().asks == (BookLevel(D("100"), D("5")),)


def plain_fee(notional: Decimal, bps: Decimal) -> Decimal:
    """The fee as the module doc writes it: notional * bps / 10000, half up to 1e-8."""
    with localcontext(MONEY_CONTEXT):
        return (notional * bps / 10000).quantize(FEE_QUANTUM, rounding=ROUND_HALF_UP)


class TestFeeAsOneProduct:
    @settings(max_examples=300, deadline=None)
    @given(
        notional=st.decimals(min_value=D("0"), max_value=D("1e15"), places=12),
        bps=st.decimals(min_value=D("0"), max_value=D("100"), places=4),
    )
    def test_equals_the_quotient_of_the_product(self, notional: Decimal, bps: Decimal) -> None:
        assert fee_for(notional, bps) == plain_fee(notional, bps)

    def test_a_notional_of_more_than_forty_digits_rounds_as_the_quotient(self) -> None:
        notional = D("123456789012345678901234567.8901234567890123")
        assert fee_for(notional, D("7.5")) == plain_fee(notional, D("7.5"))

    def test_a_fill_carries_the_fee_of_its_notional(self) -> None:
        fill = make_fill(D("100.05"), D("0.0101"), D("10"), Liquidity.MAKER)
        assert (fill.notional, fill.fee) == (D("1.010505"), D("0.00101051"))


def test_a_copy_never_leaves_remaining_outside_its_quantity() -> None:
    order = Order(
        "o1",
        "a1",
        "BTC/USD",
        OrderSide.BUY,
        OrderType.MARKET,
        TimeInForce.IOC,
        Decimal("1"),
        Decimal("1"),
    )
    assert with_remaining(order, Decimal("0.4")).remaining == Decimal("0.4")
    for wrong in (Decimal("-0.001"), Decimal("1.001")):
        with pytest.raises(ValueError, match="remaining must be within"):
            with_remaining(order, wrong)
