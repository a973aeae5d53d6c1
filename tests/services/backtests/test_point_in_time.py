"""The gated market: at a moment, only candles closed by it, a ticker from the last of
them, and fills on the first candle opening at or after it, before the next decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from connectors.base import Candle
from services.backtests.point_in_time import GatedMarket

T0 = datetime(2025, 1, 1, tzinfo=UTC)
FIVE = timedelta(minutes=5)


def candle(index: int, price: str) -> Candle:
    p = Decimal(price)
    return Candle(
        symbol="BTC/USD",
        timeframe="5m",
        open_time=T0 + FIVE * index,
        open=p,
        high=p + 1,
        low=p - 1,
        close=p,
        volume=Decimal(1),
    )


def market(limit: int = 100) -> GatedMarket:
    candles = [candle(i, str(100 + i)) for i in range(10)]
    return GatedMarket({"BTC/USD": candles}, timeframe="5m", limit=limit)


class TestClosed:
    def test_a_candle_is_seen_once_it_has_closed(self) -> None:
        gated = market()
        # At T0 + 15m, candles 0, 1 and 2 have closed; candle 3 has just opened.
        at = T0 + FIVE * 3
        assert [c.open_time for c in gated.closed("BTC/USD", at)] == [T0, T0 + FIVE, T0 + FIVE * 2]
        assert len(gated.closed("BTC/USD", at - timedelta(microseconds=1))) == 2

    def test_nothing_is_seen_before_the_first_close(self) -> None:
        gated = market()
        assert gated.closed("BTC/USD", T0 + FIVE - timedelta(seconds=1)) == []
        assert gated.ticker("BTC/USD", T0) is None
        assert gated.context("BTC/USD", T0).candles == []

    def test_the_ticker_is_the_last_closed_candles_close(self) -> None:
        ticker = market().ticker("BTC/USD", T0 + FIVE * 4 + timedelta(minutes=2))
        assert ticker is not None
        assert (ticker.last, ticker.bid, ticker.ask) == (Decimal(103),) * 3
        assert ticker.timestamp == T0 + FIVE * 4

    def test_the_context_keeps_the_latest_limit_and_none_partial(self) -> None:
        context = market(limit=3).context("BTC/USD", T0 + FIVE * 8)
        assert [c.close for c in context.candles] == [Decimal(105), Decimal(106), Decimal(107)]
        assert not any(c.partial for c in context.candles)
        assert context.indicators is not None
        assert context.indicators.last_close == 107.0


class TestFillCandle:
    def test_an_order_fills_on_the_candle_opening_at_its_time(self) -> None:
        fill = market().fill_candle("BTC/USD", T0 + FIVE * 3, T0 + FIVE * 4)
        assert fill is not None
        assert fill.open_time == T0 + FIVE * 3

    def test_between_opens_it_fills_on_the_next_one(self) -> None:
        fill = market().fill_candle("BTC/USD", T0 + FIVE * 3 + timedelta(minutes=1), None)
        assert fill is not None
        assert fill.open_time == T0 + FIVE * 4

    def test_no_candle_before_the_next_decision_means_no_fill(self) -> None:
        gated = market()
        assert (
            gated.fill_candle("BTC/USD", T0 + FIVE * 3 + timedelta(minutes=1), T0 + FIVE * 4)
            is None
        )
        assert gated.fill_candle("BTC/USD", T0 + FIVE * 10, None) is None
