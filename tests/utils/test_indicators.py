"""Indicators over Decimal closes, checked against hand-computed values."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

from models.enums import OrderSide
from utils import indicators as ind


def d(*values: float) -> list[Decimal]:
    return [Decimal(str(v)) for v in values]


def nan_equal(actual: np.ndarray, expected: list[float]) -> None:
    np.testing.assert_allclose(actual, np.array(expected, dtype=float), equal_nan=True)


class TestMovingAverages:
    def test_sma(self) -> None:
        nan_equal(ind.sma(d(1, 2, 3, 4, 5), 3), [math.nan, math.nan, 2, 3, 4])

    def test_sma_with_too_little_data_is_all_nan(self) -> None:
        assert np.isnan(ind.sma(d(1, 2), 3)).all()

    def test_ema_is_seeded_with_the_first_sma(self) -> None:
        # alpha = 2 / (3 + 1) = 0.5; seed mean(1, 2, 3) = 2.
        nan_equal(ind.ema(d(1, 2, 3, 4, 5, 6), 3), [math.nan, math.nan, 2, 3, 4, 5])

    def test_ema_skips_leading_nans(self) -> None:
        values = np.array([math.nan, math.nan, 2.0, 4.0, 6.0])
        nan_equal(ind.ema(values, 2), [math.nan, math.nan, math.nan, 3.0, 5.0])


class TestRsi:
    def test_wilder_smoothing(self) -> None:
        # Changes +1, -1, +1: first average 0.5/0.5 -> 50; then gain 0.75, loss 0.25 -> 75.
        nan_equal(ind.rsi(d(1, 2, 1, 2), 2), [math.nan, math.nan, 50, 75])

    def test_only_gains_is_100_only_losses_is_0_flat_is_50(self) -> None:
        assert ind.rsi(d(*range(1, 20)), 14)[-1] == 100
        assert ind.rsi(d(*range(20, 1, -1)), 14)[-1] == 0
        assert ind.rsi(d(*[5] * 20), 14)[-1] == 50


class TestBollinger:
    def test_bands_are_k_population_deviations_around_the_sma(self) -> None:
        upper, middle, lower = ind.bollinger(d(1, 2, 3), period=3, k=1.0)
        width = math.sqrt(2 / 3)

        assert middle[-1] == pytest.approx(2)
        assert upper[-1] == pytest.approx(2 + width)
        assert lower[-1] == pytest.approx(2 - width)
        assert math.isnan(upper[0])

    def test_flat_prices_have_zero_width(self) -> None:
        upper, middle, lower = ind.bollinger(d(*[7] * 25))

        assert upper[-1] == middle[-1] == lower[-1] == 7


class TestMacd:
    def test_line_is_fast_minus_slow_ema_and_histogram_line_minus_signal(self) -> None:
        closes = d(*(100 * 1.01**i for i in range(60)))
        line, signal, histogram = ind.macd(closes)

        expected = ind.ema(closes, 12)[-1] - ind.ema(closes, 26)[-1]
        assert line[-1] == pytest.approx(expected)
        assert histogram[-1] == pytest.approx(line[-1] - signal[-1])
        assert histogram[-1] > 0
        # The signal needs 26 closes for the line and 9 of the line: index 33 is the first.
        assert math.isnan(signal[32])
        assert not math.isnan(signal[33])


class TestReturns:
    def test_simple_returns(self) -> None:
        np.testing.assert_allclose(ind.simple_returns(d(100, 110, 99)), [0.1, -0.1])

    def test_volatility_is_sample_std_of_log_returns(self) -> None:
        closes = d(100, 110, 99, 105)
        logs = np.diff(np.log([100, 110, 99, 105]))

        assert ind.volatility(closes) == pytest.approx(float(np.std(logs, ddof=1)))
        assert ind.volatility(d(100, 101)) is None

    def test_momentum(self) -> None:
        assert ind.momentum(d(100, 105, 110), 2) == pytest.approx(0.1)
        assert ind.momentum(d(100, 105), 2) is None


class TestCrossover:
    def test_finds_the_latest_cross_and_its_age(self) -> None:
        fast = np.array([1.0, 2.0, 4.0, 5.0, 6.0])
        slow = np.array([3.0, 3.0, 3.0, 3.0, 3.0])

        assert ind.last_crossover(fast, slow) == (OrderSide.BUY, 2)

    def test_touching_is_not_crossing(self) -> None:
        fast = np.array([1.0, 3.0, 3.0])
        slow = np.array([3.0, 3.0, 3.0])

        assert ind.last_crossover(fast, slow) is None

    def test_cross_down(self) -> None:
        fast = np.array([math.nan, 5.0, 4.0, 2.0])
        slow = np.array([math.nan, 3.0, 3.0, 3.0])

        assert ind.last_crossover(fast, slow) == (OrderSide.SELL, 0)


class TestSnapshot:
    def test_short_history_leaves_long_indicators_empty(self) -> None:
        snapshot = ind.indicator_snapshot(d(100, 101, 102))

        assert snapshot.sample_size == 3
        assert snapshot.last_close == 102
        assert snapshot.sma_fast is None
        assert snapshot.rsi is None
        assert snapshot.macd is None

    def test_full_history_fills_every_value(self) -> None:
        snapshot = ind.indicator_snapshot(d(*(100 + (i % 7) for i in range(60))))

        missing = [k for k, v in snapshot.model_dump().items() if v is None]
        assert missing in ([], ["sma_cross", "sma_cross_age"])
        assert snapshot.sma_fast == pytest.approx(
            float(np.mean([100 + (i % 7) for i in range(50, 60)]))
        )
