"""The look-ahead check, pure: the built-in strategies are clean on random parameters,
strategies that peek are caught at the right candle and value, and the cut points are
right at the edges (the first candle, the last, no change at all) and under a bound."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.strategy_params import (
    BreakoutParams,
    MeanReversionParams,
    RocMomentumParams,
    RsiMomentumParams,
    StrategyParams,
    TrendFollowingParams,
)
from services.backtests.lookahead import check_lookahead, cut_points, summary
from services.backtests.signals import FloatArray, Ohlcv, Signals, signals_for
from tests.services.backtests.test_signals import any_params, candles, random_series


def wanting(position: list[int], **indicators: FloatArray) -> Callable[[Ohlcv], Signals]:
    """A signal function that wants `position` (cut to the series' length)."""

    def compute(series: Ohlcv) -> Signals:
        n = len(series)
        zeros = np.zeros(n)
        cut = {name: values[:n] for name, values in indicators.items()}
        return Signals(np.array(position[:n], dtype=np.int8), zeros, zeros, cut)

    return compute


def peeking(series: Ohlcv) -> Signals:
    """Long when the next close is higher: the last candle has no next one, so flat."""
    close = series.close
    position = np.zeros(len(close), dtype=np.int8)
    position[:-1] = close[1:] > close[:-1]
    zeros = np.zeros(len(close))
    return Signals(position, zeros, zeros)


def centred(half: int) -> Callable[[Ohlcv], Signals]:
    """Long above a moving average centred on the candle: `half` candles each side, so
    undefined (NaN) on the last `half` candles of whatever series it is given."""

    def compute(series: Ohlcv) -> Signals:
        close = series.close
        average = np.full(len(close), np.nan)
        width = 2 * half + 1
        if len(close) >= width:
            windows = np.lib.stride_tricks.sliding_window_view(close, width)
            average[half : len(close) - half] = windows.mean(axis=1)
        position = (close > average).astype(np.int8)  # NaN compares False: flat
        zeros = np.zeros(len(close))
        return Signals(position, zeros, zeros, {"centred": average})

    return compute


class TestBuiltInStrategies:
    @settings(max_examples=60, deadline=None)
    @given(params=any_params(), seed=st.integers(0, 2**32 - 1), length=st.integers(1, 300))
    def test_report_no_findings_on_random_parameters(
        self, params: StrategyParams, seed: int, length: int
    ) -> None:
        series = random_series(seed, length)
        compute = partial(signals_for, params=params)
        report = check_lookahead(compute, series, max_cut_points=None)
        assert report.findings == ()
        assert not report.repainting
        assert report.cut_points == tuple(compute(series).changes().tolist())

    @pytest.mark.parametrize(
        ("params", "names"),
        [
            (TrendFollowingParams(fast_window=3, slow_window=8), {"fast", "slow", "atr"}),
            (MeanReversionParams(window=8, entry_z=1), {"middle", "sigma", "z"}),
            (RsiMomentumParams(window=5, entry=55, exit=45), {"rsi"}),
            (RocMomentumParams(indicator="roc", window=4), {"roc", "atr"}),
            (BreakoutParams(entry_window=5, exit_window=3), {"entry_high", "exit_low", "atr"}),
        ],
    )
    def test_each_exposes_its_indicators_and_they_are_checked(
        self, params: StrategyParams, names: set[str]
    ) -> None:
        series = random_series(3, 200)
        signals = signals_for(series, params)
        assert set(signals.indicators) == names
        assert all(len(values) == 200 for values in signals.indicators.values())
        # Only an indicator repaints here: a copy with its last value doctored is caught.
        name = sorted(names)[0]

        def doctored(part: Ohlcv) -> Signals:
            got = signals_for(part, params)
            values = got.indicators[name].copy()
            values[-1] += 1.0
            return Signals(got.position, got.strength, got.confidence, {name: values})

        report = check_lookahead(doctored, series, max_cut_points=None)
        cuts = report.cut_points
        assert cuts, "the random series trades"
        # The full run doctored only candle 199; each cut before it differs at the cut.
        assert [(f.cut, f.bar, f.name) for f in report.findings] == [
            (cut, cut, name) for cut in cuts if cut < 199
        ]

    @pytest.mark.parametrize(("noise", "caught"), [(1e-12, False), (1e-6, True)])
    def test_floats_are_equal_within_the_tolerance(self, noise: float, caught: bool) -> None:
        def noisy(series: Ohlcv) -> Signals:
            n = len(series)  # the run cut after candle 0 (odd length) is off by `noise`
            strength = np.full(n, 50.0) * (1 + noise * (n % 2))
            return Signals(np.ones(n, dtype=np.int8), strength, np.zeros(n))

        report = check_lookahead(noisy, random_series(1, 10))
        assert report.cut_points == (0,)
        assert [f.name for f in report.findings] == (["strength"] if caught else [])


class TestLookAheadIsCaught:
    def test_a_peek_at_the_next_close_is_named_at_each_entry(self) -> None:
        series = random_series(7, 120)
        report = check_lookahead(peeking, series, max_cut_points=None)
        whole = peeking(series)
        entries = [i for i in whole.changes().tolist() if whole.position[i] == 1 and i < 119]
        assert report.repainting
        assert report.changed() == ["position"]
        # Cut after an entry, the peek has nothing to see and is flat there; at an exit it
        # is flat either way, so only the entries differ, each at its own candle.
        assert [(f.cut, f.bar, f.full, f.truncated) for f in report.findings] == [
            (i, i, 1.0, 0.0) for i in entries
        ]
        assert all(f.bars_changed == 1 for f in report.findings)
        assert "Repainting: position" in summary(report)

    def test_a_centred_average_is_named_with_the_candles_it_repaints(self) -> None:
        # The average of 2 candles either side dips to 9.4 at candle 4 because candle 6
        # is 7: candle 4's close of 10 is "above" it only in hindsight.
        closes = [10.0] * 6 + [7.0, 13.0] + [10.0] * 4
        series = candles(closes)
        assert centred(2)(series).changes().tolist() == [4, 5, 7, 8]
        report = check_lookahead(centred(2), series, max_cut_points=None)
        assert report.changed() == ["position", "centred"]
        # Cut after candle i, the average is undefined on candles i - 1 and i. At an
        # exit (5, 8) the cut candle itself agrees; the entry before it is repainted.
        assert [(f.cut, f.bar, f.name, f.bars_changed) for f in report.findings] == [
            (4, 4, "position", 1),
            (4, 3, "centred", 2),
            (5, 4, "position", 1),
            (5, 4, "centred", 2),
            (7, 7, "position", 1),
            (7, 6, "centred", 2),
            (8, 7, "position", 1),
            (8, 7, "centred", 2),
        ]
        dip = report.findings[3]
        assert dip.full == pytest.approx(np.mean(closes[2:7]))
        assert np.isnan(dip.truncated)


class TestCutPoints:
    def test_a_change_on_the_first_candle_cuts_after_it(self) -> None:
        series = candles([10.0, 11, 12, 11, 10])
        report = check_lookahead(peeking, series, max_cut_points=None)
        assert report.cut_points[0] == 0  # long from candle 0: it peeked at candle 1
        assert (report.findings[0].cut, report.findings[0].bar) == (0, 0)

    def test_a_change_on_the_last_candle_cuts_nothing_off(self) -> None:
        series = random_series(2, 6)
        report = check_lookahead(wanting([0, 0, 0, 0, 0, 1]), series, max_cut_points=None)
        assert report.cut_points == (5,)
        assert report.findings == ()
        assert "No look-ahead found" in summary(report)

    def test_no_change_of_position_has_no_cut_point(self) -> None:
        report = check_lookahead(wanting([0] * 8), random_series(2, 8))
        assert (report.candles, report.position_changes, report.cut_points) == (8, 0, ())
        assert not report.repainting
        assert summary(report).startswith("No position change in 8 candles")

    def test_a_bound_keeps_the_first_and_last_changes_evenly_spaced(self) -> None:
        changes = np.array([2, 5, 9, 14, 20, 27, 35, 44, 54, 65])
        assert cut_points(changes, None) == tuple(changes.tolist())
        assert cut_points(changes, 10) == tuple(changes.tolist())
        assert cut_points(changes, 3) == (2, 20, 65)
        assert cut_points(changes, 2) == (2, 65)
        assert cut_points(changes, 1) == (65,)

    def test_the_bound_applies_to_the_check(self) -> None:
        series = random_series(7, 120)
        report = check_lookahead(peeking, series, max_cut_points=4)
        assert len(report.cut_points) == 4
        assert report.position_changes > 4

    def test_a_function_that_drops_candles_is_refused(self) -> None:
        def short(series: Ohlcv) -> Signals:
            return wanting([1] * 3)(series.head(len(series) - 1))

        with pytest.raises(ValueError, match="gave"):
            check_lookahead(short, random_series(1, 4))
