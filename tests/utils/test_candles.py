from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from connectors.base import Candle
from utils.candles import CandleAggregator, aggregate, align, timeframe_delta, to_utc

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _ticks(
    count: int, *, seconds: int = 7, seed: int = 3
) -> list[tuple[Decimal, Decimal, datetime]]:
    rng = random.Random(seed)
    price = 10_000
    ticks = []
    for i in range(count):
        price = max(1, price + rng.randint(-50, 50))
        ticks.append(
            (
                Decimal(price) / 100,
                Decimal(rng.randint(0, 500)) / 1000,
                T0 + timedelta(seconds=seconds * i),
            )
        )
    return ticks


def _feed(aggregator: CandleAggregator, ticks: list[tuple[Decimal, Decimal, datetime]]) -> None:
    for price, volume, timestamp in ticks:
        aggregator.add("BTC/USD", price, volume, timestamp)


class TestTimeframes:
    def test_delta_of_each_default_timeframe(self) -> None:
        assert timeframe_delta("1m") == timedelta(minutes=1)
        assert timeframe_delta("1d") == timedelta(days=1)

    def test_unknown_timeframe_raises(self) -> None:
        with pytest.raises(ValueError, match="unknown timeframe"):
            timeframe_delta("2m")

    def test_align_floors_to_utc_boundary(self) -> None:
        moment = datetime(2025, 3, 4, 10, 7, 31, tzinfo=UTC)
        assert align(moment, "5m") == datetime(2025, 3, 4, 10, 5, tzinfo=UTC)
        assert align(moment, "1h") == datetime(2025, 3, 4, 10, tzinfo=UTC)
        assert align(moment, "1d") == datetime(2025, 3, 4, tzinfo=UTC)

    def test_align_converts_other_zones_to_utc(self) -> None:
        moment = datetime(2025, 3, 4, 1, 30, tzinfo=timezone(timedelta(hours=2)))
        assert align(moment, "1d") == datetime(2025, 3, 3, tzinfo=UTC)

    def test_naive_datetime_is_refused(self) -> None:
        with pytest.raises(ValueError, match="naive"):
            to_utc(datetime(2025, 1, 1))


class TestCandleAggregator:
    def test_candles_are_ohlc_consistent(self) -> None:
        aggregator = CandleAggregator()
        _feed(aggregator, _ticks(2000))
        for timeframe in aggregator.timeframes:
            candles = aggregator.candles("BTC/USD", timeframe)
            assert candles
            for c in candles:
                assert c.low <= min(c.open, c.close)
                assert c.high >= max(c.open, c.close)
                assert c.open_time == align(c.open_time, timeframe)

    def test_candle_holds_first_max_min_last_and_sum(self) -> None:
        aggregator = CandleAggregator(["1m"])
        ticks = _ticks(8)  # 56 s: one minute
        _feed(aggregator, ticks)
        candle = aggregator.current("BTC/USD", "1m")
        assert candle is not None
        prices = [p for p, _, _ in ticks]
        assert (candle.open, candle.high, candle.low, candle.close) == (
            prices[0],
            max(prices),
            min(prices),
            prices[-1],
        )
        assert candle.volume == sum(v for _, v, _ in ticks)
        assert candle.trades == len(ticks)

    def test_add_returns_the_candles_it_closes(self) -> None:
        aggregator = CandleAggregator(["1m", "5m"])
        aggregator.add("BTC/USD", Decimal(1), Decimal(0), T0)
        assert aggregator.add("BTC/USD", Decimal(2), Decimal(0), T0 + timedelta(seconds=59)) == []
        closed = aggregator.add("BTC/USD", Decimal(3), Decimal(0), T0 + timedelta(minutes=5))
        assert [(c.timeframe, c.close) for c in closed] == [("1m", Decimal(2)), ("5m", Decimal(2))]

    def test_one_minute_rolls_up_exactly_into_five_minutes(self) -> None:
        aggregator = CandleAggregator(["1m", "5m", "1h"])
        _feed(aggregator, _ticks(3000))
        one_minute = aggregator.candles("BTC/USD", "1m")
        assert aggregate(one_minute, "5m") == aggregator.candles("BTC/USD", "5m")
        assert aggregate(one_minute, "1h") == aggregator.candles("BTC/USD", "1h")

    def test_period_without_ticks_has_no_candle(self) -> None:
        aggregator = CandleAggregator(["1m"])
        aggregator.add("BTC/USD", Decimal(1), Decimal(0), T0)
        aggregator.add("BTC/USD", Decimal(1), Decimal(0), T0 + timedelta(minutes=3))
        times = [c.open_time for c in aggregator.candles("BTC/USD", "1m")]
        assert times == [T0, T0 + timedelta(minutes=3)]

    def test_max_closed_bounds_what_is_kept(self) -> None:
        aggregator = CandleAggregator(["1m"], max_closed=5)
        _feed(aggregator, _ticks(200, seconds=30))
        assert len(aggregator.closed("BTC/USD", "1m")) == 5
        assert aggregator.dropped("BTC/USD", "1m") > 0

    def test_unknown_symbol_has_no_candles(self) -> None:
        assert CandleAggregator().candles("ETH/USD", "1m") == []

    def test_tick_older_than_open_candle_raises(self) -> None:
        aggregator = CandleAggregator(["1m"])
        aggregator.add("BTC/USD", Decimal(1), Decimal(0), T0 + timedelta(minutes=1))
        with pytest.raises(ValueError, match="older"):
            aggregator.add("BTC/USD", Decimal(1), Decimal(0), T0)

    @pytest.mark.parametrize(
        ("volume", "trades", "match"),
        [(Decimal(-1), 1, "negative volume"), (Decimal(1), -1, "negative trade count")],
    )
    def test_negative_volume_or_trades_raise(
        self, volume: Decimal, trades: int, match: str
    ) -> None:
        with pytest.raises(ValueError, match=match):
            CandleAggregator().add("BTC/USD", Decimal(1), volume, T0, trades=trades)

    def test_bad_construction_raises(self) -> None:
        with pytest.raises(ValueError, match="at least one"):
            CandleAggregator([])
        with pytest.raises(ValueError, match="max_closed"):
            CandleAggregator(max_closed=-1)
        with pytest.raises(ValueError, match="unknown timeframe"):
            CandleAggregator(["7m"])

    def test_reading_a_timeframe_not_aggregated_raises(self) -> None:
        with pytest.raises(ValueError, match="not aggregated"):
            CandleAggregator(["1m"]).candles("BTC/USD", "5m")


def _candle(minute: int, *, symbol: str = "BTC/USD", timeframe: str = "1m") -> Candle:
    price = Decimal(100 + minute)
    return Candle(
        symbol, timeframe, T0 + timedelta(minutes=minute), price, price, price, price, Decimal(1)
    )


class TestAggregate:
    def test_empty_gives_empty(self) -> None:
        assert aggregate([], "5m") == []

    def test_cannot_roll_into_a_smaller_or_non_multiple_timeframe(self) -> None:
        with pytest.raises(ValueError, match="cannot roll"):
            aggregate([_candle(0, timeframe="5m")], "1m")

    def test_mixed_symbols_raise(self) -> None:
        with pytest.raises(ValueError, match="one symbol"):
            aggregate([_candle(0), _candle(1, symbol="ETH/USD")], "5m")

    def test_out_of_order_raises(self) -> None:
        with pytest.raises(ValueError, match="time order"):
            aggregate([_candle(1), _candle(0)], "5m")

    def test_sums_volume_and_keeps_first_open_last_close(self) -> None:
        (candle,) = aggregate([_candle(m) for m in range(5)], "5m")
        assert (candle.open, candle.close, candle.volume) == (
            Decimal(100),
            Decimal(104),
            Decimal(5),
        )
        assert candle.open_time == T0
