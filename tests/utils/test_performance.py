"""Performance maths on small hand-computed series."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from utils import performance

D = Decimal
# Returns 0.1, -0.1, 0.1: mean 1/30, sample stdev 1/sqrt(75), downside deviation
# sqrt(0.01 / 3).
SERIES = [D(100), D(110), D(99), D("108.9")]
T0 = datetime(2024, 1, 1, tzinfo=UTC)


class TestReturns:
    def test_simple_returns_between_consecutive_points(self) -> None:
        assert performance.simple_returns(SERIES) == [0.1, -0.1, 0.1]

    def test_step_from_zero_equity_has_no_return(self) -> None:
        assert performance.simple_returns([D(0), D(100), D(110)]) == [0.1]

    @pytest.mark.parametrize("series", [[], [D(100)]])
    def test_fewer_than_two_points_have_no_returns(self, series: list[Decimal]) -> None:
        assert performance.simple_returns(series) == []

    def test_total_return_is_last_over_first(self) -> None:
        assert performance.total_return(SERIES) == D("0.089")

    @pytest.mark.parametrize("series", [[], [D(100)], [D(0), D(10)]])
    def test_total_return_undefined(self, series: list[Decimal]) -> None:
        assert performance.total_return(series) is None


class TestDrawdown:
    def test_drawdown_of_each_point_from_running_peak(self) -> None:
        assert performance.drawdowns(SERIES) == [D(0), D(0), D("0.1"), D("0.01")]

    def test_max_drawdown_is_the_deepest_fall(self) -> None:
        assert performance.max_drawdown(SERIES) == D("0.1")

    def test_all_losses_fall_from_the_first_point(self) -> None:
        assert performance.max_drawdown([D(100), D(90), D(81)]) == D("0.19")

    def test_later_deeper_fall_from_a_new_peak(self) -> None:
        series = [D(100), D(80), D(200), D(150), D(210)]
        assert performance.max_drawdown(series) == D("0.25")

    @pytest.mark.parametrize("series", [[], [D(100)], [D(100), D(100), D(100)], [D(0), D(0)]])
    def test_no_fall_is_zero(self, series: list[Decimal]) -> None:
        assert performance.max_drawdown(series) == 0


class TestPeriodsPerYear:
    def test_daily_snapshots(self) -> None:
        stamps = [T0 + timedelta(days=i) for i in range(3)]
        assert performance.periods_per_year(stamps) == 365

    def test_median_spacing_ignores_a_gap(self) -> None:
        hours = [0, 1, 2, 5]
        assert performance.periods_per_year([T0 + timedelta(hours=h) for h in hours]) == 8760

    @pytest.mark.parametrize("stamps", [[], [T0], [T0, T0]])
    def test_undefined(self, stamps: list[datetime]) -> None:
        assert performance.periods_per_year(stamps) is None


class TestRatios:
    def test_sharpe_annualised(self) -> None:
        returns = performance.simple_returns(SERIES)
        assert performance.sharpe_ratio(returns, 4) == pytest.approx(1 / math.sqrt(3), rel=1e-12)

    def test_sortino_annualised(self) -> None:
        returns = performance.simple_returns(SERIES)
        assert performance.sortino_ratio(returns, 4) == pytest.approx(2 / math.sqrt(3), rel=1e-12)

    def test_volatility_annualised(self) -> None:
        returns = performance.simple_returns(SERIES)
        assert performance.volatility(returns, 4) == pytest.approx(2 / math.sqrt(75), rel=1e-12)

    def test_flat_series_has_no_sharpe_or_sortino_and_zero_volatility(self) -> None:
        returns = performance.simple_returns([D(100), D(100), D(100)])
        assert performance.sharpe_ratio(returns, 365) is None
        assert performance.sortino_ratio(returns, 365) is None
        assert performance.volatility(returns, 365) == 0

    def test_constant_gain_has_no_sharpe_and_no_downside(self) -> None:
        returns = performance.simple_returns([D(100), D(110), D(121)])
        assert performance.sharpe_ratio(returns, 365) is None
        assert performance.sortino_ratio(returns, 365) is None

    def test_all_losses_sortino_is_minus_root_of_periods(self) -> None:
        returns = performance.simple_returns([D(100), D(90), D(81)])
        assert performance.sortino_ratio(returns, 4) == pytest.approx(-2, rel=1e-12)
        assert performance.sharpe_ratio(returns, 4) is None

    @pytest.mark.parametrize("returns", [[], [0.1]])
    def test_fewer_than_two_returns_are_undefined(self, returns: list[float]) -> None:
        assert performance.sharpe_ratio(returns, 365) is None
        assert performance.sortino_ratio(returns, 365) is None
        assert performance.volatility(returns, 365) is None


class TestTrades:
    def test_win_rate_over_closed_trades(self) -> None:
        assert performance.win_rate(2, 5) == D("0.4")

    def test_win_rate_without_trades_is_undefined(self) -> None:
        assert performance.win_rate(0, 0) is None

    def test_profit_factor_is_gross_profit_over_gross_loss(self) -> None:
        results = [D(30), D(-10), D(20), D(-15), D(0)]
        assert performance.profit_factor(results) == D(2)

    def test_profit_factor_of_all_losses_is_zero(self) -> None:
        assert performance.profit_factor([D(-1), D(-2)]) == 0

    @pytest.mark.parametrize("results", [[], [D(5)], [D(0)]])
    def test_profit_factor_without_a_loss_is_undefined(self, results: list[Decimal]) -> None:
        assert performance.profit_factor(results) is None


class TestCagr:
    def test_a_year_of_steps_is_the_total_return(self) -> None:
        assert performance.cagr(Decimal("0.1"), 365, 365.0) == pytest.approx(0.1)

    def test_half_a_year_compounds_to_a_year(self) -> None:
        # Doubling in half a year is quadrupling in a year.
        assert performance.cagr(Decimal(1), 100, 200.0) == pytest.approx(3.0)

    def test_undefined_without_a_return_steps_or_periods(self) -> None:
        assert performance.cagr(None, 10, 365.0) is None
        assert performance.cagr(Decimal("0.1"), 0, 365.0) is None
        assert performance.cagr(Decimal("0.1"), 10, None) is None

    def test_a_total_loss_is_minus_one_and_an_overflow_undefined(self) -> None:
        assert performance.cagr(Decimal(-1), 10, 365.0) == -1.0
        assert performance.cagr(Decimal(10), 1, 525_600.0) is None
