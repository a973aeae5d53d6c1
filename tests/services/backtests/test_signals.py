"""The built-in strategies' signals: hand-worked series, the parameters' validation, and
no look-ahead (the signals of a series cut after candle i are the first i + 1 signals
of the whole series, bit for bit)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from models.strategy_params import (
    BreakoutParams,
    MeanReversionParams,
    RocMomentumParams,
    RsiMomentumParams,
    StrategyParams,
    TrendFollowingParams,
    kind_of,
    parse_parameters,
)
from services.backtests.signals import Ohlcv, Signals, average_true_range, signals_for


def candles(closes: list[float], *, volume: list[float] | None = None, wick: float = 1.0) -> Ohlcv:
    """Each candle opens at the previous close and reaches `wick` beyond its body."""
    close = np.array(closes, dtype=float)
    open_ = np.concatenate((close[:1], close[:-1]))
    return Ohlcv.of(
        open_,
        np.maximum(open_, close) + wick,
        np.minimum(open_, close) - wick,
        close,
        volume if volume is not None else np.ones(len(close)),
    )


class TestTrendFollowing:
    def test_long_while_the_fast_average_is_above_the_slow(self) -> None:
        # i:      0   1   2   3     4     5     6     7     8     9
        # sma2:   -  10  10  10.5  11.5  12.5  12.5  11.5  10.5   9.5
        # sma3:   -   -  10  10.3  11    12    12.3  12    11    10
        series = candles([10, 10, 10, 11, 12, 13, 12, 11, 10, 9])
        signals = signals_for(series, TrendFollowingParams(fast_window=2, slow_window=3))
        assert signals.position.tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
        assert signals.changes().tolist() == [3, 7]

    def test_ema_averages(self) -> None:
        # EMA(1) is the close; EMA(3) (alpha 1/2) starts at the SMA 10, then 11.5, 9.25.
        series = candles([10, 10, 10, 13, 7])
        params = TrendFollowingParams(fast_window=1, slow_window=3, average="ema")
        assert signals_for(series, params).position.tolist() == [0, 0, 0, 1, 0]

    def test_equal_averages_are_flat_despite_float_noise(self) -> None:
        # Averages of 0.1 over 3 and 5 candles differ in the last bit; that is no trend.
        series = candles([0.1] * 12 + [0.3, 0.7] + [0.1] * 12)
        signals = signals_for(series, TrendFollowingParams(fast_window=3, slow_window=5))
        assert signals.position[:12].tolist() == [0] * 12
        assert signals.position[-6:].tolist() == [0] * 6

    def test_strength_is_the_gap_over_two_average_true_ranges(self) -> None:
        # Candle 4: sma2 11.5, sma3 11, gap 0.5. True ranges of candles 2-4: 11 - 9,
        # 12 - 9, 13 - 10 (each candle's body plus a wick of 1 either side).
        series = candles([10, 10, 10, 11, 12, 13])
        signals = signals_for(series, TrendFollowingParams(fast_window=2, slow_window=3))
        assert average_true_range(series, 3)[4] == pytest.approx(8 / 3)
        assert signals.strength[4] == pytest.approx(100 * 0.5 / (2 * 8 / 3))

    def test_confidence_is_relative_volume(self) -> None:
        # Candle 4 trades 3 against a mean of 5/3 over the slow window: r = 1.8.
        series = candles([10, 10, 10, 11, 12], volume=[1, 1, 1, 1, 3])
        signals = signals_for(series, TrendFollowingParams(fast_window=2, slow_window=3))
        assert signals.confidence[4] == pytest.approx(1.8 / 2.8)
        assert signals.confidence[3] == pytest.approx(0.5)

    def test_warm_up_is_flat_with_no_strength_or_confidence(self) -> None:
        signals = signals_for(
            candles([10, 11, 12, 13]), TrendFollowingParams(fast_window=2, slow_window=3)
        )
        assert signals.position[:2].tolist() == [0, 0]
        assert signals.strength[:2].tolist() == [0, 0]
        assert signals.confidence[:2].tolist() == [0, 0]

    def test_no_volume_at_all_is_neutral_confidence(self) -> None:
        series = candles([10, 10, 11, 12], volume=[0, 0, 0, 0])
        signals = signals_for(series, TrendFollowingParams(fast_window=1, slow_window=2))
        assert signals.confidence[1:].tolist() == [0.5, 0.5, 0.5]


def _z(window: list[float]) -> float:
    mean = sum(window) / len(window)
    sigma = math.sqrt(sum((x - mean) ** 2 for x in window) / len(window))
    return (window[-1] - mean) / sigma


class TestMeanReversion:
    def test_long_from_entry_z_until_exit_z(self) -> None:
        # z: 2 undefined (no dispersion), 3 -1.41 (enter), 4 -0.27 (hold), 5 +1.34 (exit).
        closes = [10.0, 10, 10, 7, 8, 10, 11]
        params = MeanReversionParams(window=3, entry_z=1.2, exit_z=0)
        signals = signals_for(candles(closes), params)
        assert signals.position.tolist() == [0, 0, 0, 1, 1, 0, 0]
        assert signals.strength[3] == 100  # 1.41 from the exit: past the 1.2 band
        assert signals.strength[4] == pytest.approx(100 * -_z(closes[2:5]) / 1.2)
        assert signals.strength[5] == 100  # 1.34 + 1.2 from re-entering

    def test_a_window_without_dispersion_keeps_the_view(self) -> None:
        closes = [10.0, 10, 10, 7, 7, 7, 7, 7]
        signals = signals_for(candles(closes), MeanReversionParams(window=3, entry_z=1.2))
        assert signals.position.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
        assert signals.strength[5:].tolist() == [0, 0, 0]
        assert signals.confidence[5:].tolist() == [0, 0, 0]

    def test_exit_above_the_mean(self) -> None:
        # exit_z 1: candle 5's z of 1.34 exits, candle 4's -0.27 does not.
        closes = [10.0, 10, 10, 7, 8, 10, 11]
        params = MeanReversionParams(window=3, entry_z=1.2, exit_z=1.0)
        assert signals_for(candles(closes), params).position.tolist() == [0, 0, 0, 1, 1, 0, 0]
        params = MeanReversionParams(window=3, entry_z=1.2, exit_z=1.4)
        assert signals_for(candles(closes), params).position.tolist() == [0, 0, 0, 1, 1, 1, 1]


class TestMomentum:
    def test_rsi_long_from_entry_until_exit(self) -> None:
        # Wilder RSI(2): 100, 50, 25, 12.5, 56.25 from candle 2 on.
        closes = [10.0, 11, 12, 11, 10, 9, 10]
        params = RsiMomentumParams(window=2, entry=60, exit=40)
        signals = signals_for(candles(closes), params)
        assert signals.position.tolist() == [0, 0, 1, 1, 0, 0, 0]
        assert signals.strength[2:].tolist() == pytest.approx([100, 50, 100, 100, 18.75])

    def test_rate_of_change_above_threshold(self) -> None:
        # ROC(2): 0.04, 0.06, 0.0096, -0.057 from candle 2 on.
        closes = [100.0, 100, 104, 106, 105, 100]
        params = RocMomentumParams(indicator="roc", window=2, threshold=0.05)
        signals = signals_for(candles(closes), params)
        assert signals.position.tolist() == [0, 0, 0, 1, 0, 0]
        # Candle 3: 106 is 1 above 100 * 1.05; the true ranges of candles 2-3 are 6 and 4.
        assert signals.strength[3] == pytest.approx(100 * 1 / (2 * 5))


class TestBreakout:
    def test_long_from_a_close_above_the_channel_until_one_below_the_exit_channel(
        self,
    ) -> None:
        # Highs and lows are the close +- 0.5. Candle 3 closes 12 above the 11.5 high of
        # candles 0-2; candle 5 closes 10.2 below the 10.5 low of candles 3-4.
        series = candles([10.0, 11, 10, 12, 11, 10.2, 9], wick=0.0)
        series = Ohlcv.of(
            series.close, series.close + 0.5, series.close - 0.5, series.close, series.volume
        )
        signals = signals_for(series, BreakoutParams(entry_window=3, exit_window=2))
        assert signals.position.tolist() == [0, 0, 0, 1, 1, 0, 0]
        # Candle 3: 2.5 above the exit low 9.5; ATR(3) of true ranges 1.5, 1.5, 2.5.
        assert signals.strength[3] == pytest.approx(100 * 2.5 / (2 * 5.5 / 3))

    def test_the_breaking_candle_is_not_in_its_own_channel(self) -> None:
        series = candles([10.0, 10, 10, 10.5], wick=0.25)
        # Candle 3's high (10.75) is above its close, yet its close is above the highs
        # (10.25) of the three candles before it.
        signals = signals_for(series, BreakoutParams(entry_window=3, exit_window=3))
        assert signals.position.tolist() == [0, 0, 0, 1]


class TestParameters:
    def test_unknown_parameter_is_named(self) -> None:
        with pytest.raises(ValidationError) as info:
            parse_parameters("trend_following", {"fast_window": 5, "slowest": 9})
        assert info.value.errors()[0]["loc"] == ("slowest",)

    @pytest.mark.parametrize(
        ("kind", "raw", "field"),
        [
            ("trend_following", {"fast_window": 20, "slow_window": 20}, "slow_window"),
            ("trend_following", {"average": "wma"}, "average"),
            ("mean_reversion", {"entry_z": 1.5, "exit_z": -1.5}, "exit_z"),
            ("mean_reversion", {"window": 1}, "window"),
            ("momentum", {"entry": 40, "exit": 60}, "exit"),
            ("momentum", {"indicator": "macd"}, "indicator"),
            ("momentum", {"indicator": "roc", "threshold": -1}, "threshold"),
            ("breakout", {"entry_window": 0}, "entry_window"),
        ],
    )
    def test_bad_parameter_is_named(self, kind: Any, raw: dict[str, Any], field: str) -> None:
        with pytest.raises(ValidationError) as info:
            parse_parameters(kind, raw)
        assert [e["loc"] for e in info.value.errors()] == [(field,)]

    def test_momentum_indicator_chooses_the_model(self) -> None:
        assert isinstance(parse_parameters("momentum", {}), RsiMomentumParams)
        roc = parse_parameters("momentum", {"indicator": "roc", "window": 5})
        assert roc == RocMomentumParams(indicator="roc", window=5)
        assert kind_of(roc) == "momentum"

    def test_unknown_type_is_refused(self) -> None:
        with pytest.raises(ValueError, match="custom"):
            parse_parameters("custom", {})  # type: ignore[arg-type]


# ---- no look-ahead ---------------------------------------------------------------------


def repainted(compute: Callable[[Ohlcv], Signals], series: Ohlcv, cuts: list[int]) -> list[int]:
    """The cuts at which a truncated series' signals differ from the whole one's: a
    strategy that looks ahead changes its past signals when the future is removed."""
    whole = compute(series)
    changed = []
    for cut in cuts:
        part = compute(series.head(cut))
        expected = whole.head(cut)
        if not all(
            np.array_equal(getattr(part, name), getattr(expected, name))
            for name in ("position", "strength", "confidence")
        ):
            changed.append(cut)
    return changed


def random_series(seed: int, length: int) -> Ohlcv:
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, 0.01, length) * (rng.random(length) > 0.2)  # flat stretches too
    close = 100 * np.exp(np.cumsum(steps))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, length))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, length))
    return Ohlcv.of(open_, high, low, close, rng.uniform(0, 10, length))


windows = st.integers(min_value=1, max_value=40)


@st.composite
def any_params(draw: st.DrawFn) -> StrategyParams:
    kind = draw(st.sampled_from(["trend", "mean", "rsi", "roc", "breakout"]))
    if kind == "trend":
        fast = draw(windows)
        slow = draw(st.integers(fast + 1, fast + 40))
        return TrendFollowingParams(
            fast_window=fast, slow_window=slow, average=draw(st.sampled_from(["sma", "ema"]))
        )
    if kind == "mean":
        entry = draw(st.floats(0.1, 3))
        exit_z = draw(st.floats(-entry + 0.01, 3))
        return MeanReversionParams(window=draw(windows) + 1, entry_z=entry, exit_z=exit_z)
    if kind == "rsi":
        entry = draw(st.floats(1, 99))
        exit_ = draw(st.floats(0, entry - 0.5))
        return RsiMomentumParams(window=draw(windows) + 1, entry=entry, exit=exit_)
    if kind == "roc":
        threshold = draw(st.floats(-0.05, 0.05))
        return RocMomentumParams(indicator="roc", window=draw(windows), threshold=threshold)
    return BreakoutParams(entry_window=draw(windows), exit_window=draw(windows))


class TestNoLookAhead:
    @settings(max_examples=150, deadline=None)
    @given(params=any_params(), seed=st.integers(0, 2**32 - 1), length=st.integers(1, 160))
    def test_truncating_the_series_changes_no_earlier_signal(
        self, params: StrategyParams, seed: int, length: int
    ) -> None:
        series = random_series(seed, length)
        cuts = list(range(1, length + 1))
        assert repainted(lambda s: signals_for(s, params), series, cuts) == []

    def test_the_check_catches_a_strategy_that_looks_ahead(self) -> None:
        # Long when the next close is higher: profitable, and impossible to trade.
        def peeking(series: Ohlcv) -> Signals:
            close = series.close
            position = np.zeros(len(close), dtype=np.int8)
            position[:-1] = close[1:] > close[:-1]
            zeros = np.zeros(len(close))
            return Signals(position, zeros, zeros)

        series = random_series(7, 50)
        cuts = list(range(1, 51))
        caught = repainted(peeking, series, cuts)
        # Cut after candle i, the peek at candle i has nothing to see and goes flat.
        expected = [cut for cut in cuts if cut < 50 and series.close[cut] > series.close[cut - 1]]
        assert caught == expected
        assert caught
