"""Risk and performance measures against an independent implementation (empyrical-reloaded),
on hypothesis-generated and hand-made series, and on cases worked out by hand.

Equal within 1e-9, relative where the magnitudes are large (PnL in currency). Where our
convention differs from empyrical's, the test converts and says why:

- empyrical reports VaR, CVaR and max drawdown as negative returns; ours are positive
  losses, so the test negates empyrical's;
- empyrical's default annualisation is 252 ("daily"); ours is the caller's periods per
  year (365 for crypto), so the test passes `annualization` explicitly;
- empyrical's VaR cutoff is the tail probability; ours is the confidence, `cutoff = 1 - c`.
"""

from __future__ import annotations

import math
from decimal import Decimal

import empyrical  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from models.enums import AssetClass
from utils import performance
from utils import risk_measures as rm

FloatArray = npt.NDArray[np.float64]
CONFIDENCES = (0.95, 0.99)
# Small enough that the whole file runs in a few seconds.
FEW = settings(max_examples=40, deadline=None)

daily_returns = st.floats(-0.5, 0.5, allow_nan=False, allow_infinity=False)
series = st.lists(daily_returns, min_size=2, max_size=300).map(np.array)
confidences = st.sampled_from(CONFIDENCES)
periods = st.sampled_from((rm.EQUITY_PERIODS_PER_YEAR, rm.CRYPTO_PERIODS_PER_YEAR))
risk_free = st.sampled_from((0.0, 0.0001, 0.04 / 365))


@st.composite
def holdings(draw: st.DrawFn) -> tuple[FloatArray, FloatArray]:
    """Returns [T, N] and signed values [N], values up to a million (a large magnitude)."""
    days, count = draw(st.integers(1, 250)), draw(st.integers(1, 12))
    returns = draw(hnp.arrays(np.float64, (days, count), elements=daily_returns))
    values = draw(hnp.arrays(np.float64, (count,), elements=st.floats(-1e6, 1e6)))
    return returns, values


@st.composite
def aligned_pairs(draw: st.DrawFn) -> tuple[FloatArray, FloatArray]:
    """A holding's returns and a benchmark's over the same days."""
    shape = (draw(st.integers(2, 300)),)
    returns = draw(hnp.arrays(np.float64, shape, elements=daily_returns))
    return returns, draw(hnp.arrays(np.float64, shape, elements=daily_returns))


def close(ours: float | None, theirs: float) -> bool:
    return ours is not None and math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-9)


def seeded(days: int, count: int, seed: int = 3) -> FloatArray:
    """Distinct-valued random returns: no tied scenarios, so orderings are stable."""
    returns: FloatArray = np.random.default_rng(seed).normal(0.0005, 0.02, (days, count))
    return returns


class TestAgainstEmpyrical:
    @FEW
    @given(series, periods, risk_free)
    def test_sharpe(self, returns: FloatArray, year: int, rf: float) -> None:
        # Near-constant series make both ratios float noise over float noise.
        assume(np.std(returns) > 1e-6)
        theirs = empyrical.sharpe_ratio(returns, risk_free=rf, annualization=year)
        assert close(performance.sharpe_ratio(returns, year, risk_free=rf), theirs)

    @FEW
    @given(series, periods, risk_free)
    def test_sortino(self, returns: FloatArray, year: int, rf: float) -> None:
        assume(np.sqrt(np.mean(np.minimum(returns - rf, 0) ** 2)) > 1e-6)
        # empyrical's `required_return` is the target our `risk_free` is for Sortino.
        theirs = empyrical.sortino_ratio(returns, required_return=rf, annualization=year)
        assert close(performance.sortino_ratio(returns, year, risk_free=rf), theirs)

    @FEW
    @given(series, periods)
    def test_volatility(self, returns: FloatArray, year: int) -> None:
        theirs = empyrical.annual_volatility(returns, annualization=year)
        assert close(performance.volatility(returns, year), theirs)

    @FEW
    @given(series)
    def test_max_drawdown_of_returns(self, returns: FloatArray) -> None:
        assert close(rm.max_drawdown_from_returns(returns), -empyrical.max_drawdown(returns))

    @FEW
    @given(series)
    def test_max_drawdown_of_decimal_equity(self, returns: FloatArray) -> None:
        # The ledger's equity snapshots are Decimals: the same compounding from 100.
        equity = [Decimal(100)]
        for r in returns:
            equity.append(equity[-1] * (1 + Decimal(float(r))))
        ours = float(performance.max_drawdown(equity))
        assert close(ours, -empyrical.max_drawdown(returns))

    @FEW
    @given(series, confidences)
    def test_historical_var_of_returns(self, returns: FloatArray, confidence: float) -> None:
        theirs = -empyrical.value_at_risk(returns, cutoff=1 - confidence)
        assert close(rm.historical_var(returns, confidence), theirs)

    @FEW
    @given(series, confidences)
    def test_historical_es_of_returns(self, returns: FloatArray, confidence: float) -> None:
        # Hypothesis repeats values often: tied tails are where the convention shows.
        theirs = -empyrical.conditional_value_at_risk(returns, cutoff=1 - confidence)
        assert close(rm.historical_es(returns, confidence), theirs)

    @FEW
    @given(holdings(), confidences)
    def test_var_and_es_of_portfolio_pnl(
        self, book: tuple[FloatArray, FloatArray], confidence: float
    ) -> None:
        # empyrical's functions are quantiles and tail means of whatever series they
        # get: on scenario PnL they give the currency figures directly.
        pnl = rm.portfolio_pnl(*book)
        var_theirs = -empyrical.value_at_risk(pnl, cutoff=1 - confidence)
        es_theirs = -empyrical.conditional_value_at_risk(pnl, cutoff=1 - confidence)
        assert close(rm.historical_var(pnl, confidence), var_theirs)
        assert close(rm.historical_es(pnl, confidence), es_theirs)

    @FEW
    @given(holdings(), confidences)
    def test_pnl_figures_are_value_times_return_figures(
        self, book: tuple[FloatArray, FloatArray], confidence: float
    ) -> None:
        returns, values = book
        total = float(np.sum(values))
        assume(total > 1.0)
        pnl = rm.portfolio_pnl(returns, values)
        portfolio_returns = pnl / total
        var_return = -empyrical.value_at_risk(portfolio_returns, cutoff=1 - confidence)
        es_return = -empyrical.conditional_value_at_risk(portfolio_returns, 1 - confidence)
        assert close(rm.historical_var(pnl, confidence), total * var_return)
        assert close(rm.historical_es(pnl, confidence), total * es_return)

    @FEW
    @given(aligned_pairs())
    def test_beta(self, pair: tuple[FloatArray, FloatArray]) -> None:
        returns, benchmark = pair
        assume(np.var(benchmark) > 1e-6)
        assert close(rm.beta(returns, benchmark), empyrical.beta(returns, benchmark))

    def test_beta_on_seeded_series(self) -> None:
        data = seeded(1_000, 2)
        returns = 1.3 * data[:, 0] + data[:, 1]
        assert close(rm.beta(returns, data[:, 0]), empyrical.beta(returns, data[:, 0]))


class TestHistoricalVarAndEs:
    """Worked by hand: 20 scenarios -10..9, sorted s[0] = -10, s[1] = -9, ...

    95%: position 19 * 0.05 = 0.95, quantile -10 + 0.95 = -9.05; ES averages the
    floor(0.95) + 1 = 1 worst. 99%: position 0.19, quantile -9.81; ES the worst.
    """

    PNL = np.random.default_rng(1).permutation(np.arange(-10.0, 10.0))

    @pytest.mark.parametrize(("confidence", "var", "es"), [(0.95, 9.05, 10), (0.99, 9.81, 10)])
    def test_twenty_scenarios(self, confidence: float, var: float, es: float) -> None:
        assert rm.historical_var(self.PNL, confidence) == pytest.approx(var, abs=1e-12)
        assert rm.historical_es(self.PNL, confidence) == pytest.approx(es, abs=1e-12)

    @pytest.mark.parametrize(("confidence", "var", "es"), [(0.95, 45, 47.5), (0.99, 49, 49.5)])
    def test_hundred_and_one_scenarios(self, confidence: float, var: float, es: float) -> None:
        # Position 100 * 0.05 = 5: s[5] = -45 exactly; ES averages -50..-45.
        pnl = np.arange(50.0, -51.0, -1.0)
        assert rm.historical_var(pnl, confidence) == pytest.approx(var, abs=1e-12)
        assert rm.historical_es(pnl, confidence) == pytest.approx(es, abs=1e-12)

    def test_tied_tail_averages_a_count_of_scenarios_not_all_at_the_quantile(self) -> None:
        # 21 scenarios, position 20 * 0.05 = 1: the quantile is s[1] = -1, shared with
        # s[2] and s[3]. ES is the mean of the 2 worst, (-3 - 1) / 2, as empyrical's;
        # "every scenario <= VaR" would average four and give 1.5.
        pnl = np.array([-3.0, -1.0, -1.0, -1.0, *[0.0] * 17])
        assert rm.historical_var(pnl, 0.95) == pytest.approx(1.0, abs=1e-12)
        assert rm.historical_es(pnl, 0.95) == 2.0
        assert -empyrical.conditional_value_at_risk(pnl, cutoff=0.05) == 2.0

    def test_a_tail_of_gains_is_a_negative_var(self) -> None:
        assert rm.historical_var([1.0, 2.0, 3.0], 0.95) == pytest.approx(-1.1)
        assert rm.historical_es([1.0, 2.0, 3.0], 0.95) == -1.0

    def test_no_scenarios_have_no_var_or_es(self) -> None:
        assert rm.historical_var([], 0.95) is None
        assert rm.historical_es([], 0.99) is None

    @pytest.mark.parametrize("confidence", [0, 1, 95, -0.5])
    def test_confidence_outside_zero_one_is_refused(self, confidence: float) -> None:
        with pytest.raises(ValueError, match="confidence"):
            rm.historical_var([1.0, 2.0], confidence)

    @FEW
    @given(series, confidences)
    def test_es_is_at_least_var(self, returns: FloatArray, confidence: float) -> None:
        var, es = rm.historical_var(returns, confidence), rm.historical_es(returns, confidence)
        assert var is not None
        assert es is not None
        assert es >= var - 1e-12


class TestParametric:
    # Standard normal, figures from scipy.stats.norm: z(95%) = 1.6448536269514722,
    # phi(z) / 0.05 = 2.0627128075074275; z(99%) = 2.3263478740408408, phi(z) / 0.01 =
    # 2.665214220345808.
    @pytest.mark.parametrize(
        ("confidence", "var", "es"),
        [
            (0.95, 1.6448536269514722, 2.0627128075074275),
            (0.99, 2.3263478740408408, 2.665214220345808),
        ],
    )
    def test_standard_normal(self, confidence: float, var: float, es: float) -> None:
        assert rm.parametric_var(0.0, 1.0, confidence) == pytest.approx(var, rel=1e-9)
        assert rm.parametric_es(0.0, 1.0, confidence) == pytest.approx(es, rel=1e-9)

    def test_mean_offsets_and_std_scales(self) -> None:
        # 1,000 of exposure, daily mean +0.05%, stdev 2%: 1000 * (0.02 * z - 0.0005).
        expected = 1000 * (0.02 * 1.6448536269514722 - 0.0005)
        assert rm.parametric_var(0.5, 20.0, 0.95) == pytest.approx(expected, rel=1e-12)

    def test_matches_the_historical_figure_of_a_large_normal_sample(self) -> None:
        pnl = np.random.default_rng(5).normal(0.0, 1.0, 1_000_000)
        assert rm.historical_var(pnl, 0.99) == pytest.approx(rm.parametric_var(0, 1, 0.99), 0.01)
        assert rm.historical_es(pnl, 0.99) == pytest.approx(rm.parametric_es(0, 1, 0.99), 0.01)


class TestHorizon:
    def test_square_root_of_time(self) -> None:
        assert rm.scale_to_horizon(2.0, 9) == 6.0
        assert rm.scale_to_horizon(2.0, 1) == 2.0

    def test_is_the_normal_horizon_figure_without_drift(self) -> None:
        one_day = rm.parametric_var(0.0, 0.02, 0.99)
        ten_days = rm.parametric_var(0.0, 0.02 * math.sqrt(10), 0.99)
        assert rm.scale_to_horizon(one_day, 10) == pytest.approx(ten_days, rel=1e-12)

    @pytest.mark.parametrize("days", [0, -1])
    def test_refuses_a_non_positive_horizon(self, days: float) -> None:
        with pytest.raises(ValueError, match="horizon"):
            rm.scale_to_horizon(1.0, days)


class TestDrawdownOfReturns:
    def test_hand_made(self) -> None:
        # Wealth 1, 1.1, 0.99, 1.089: deepest fall 10% from 1.1.
        assert rm.max_drawdown_from_returns([0.1, -0.1, 0.1]) == pytest.approx(0.1, rel=1e-12)

    def test_first_day_loss_falls_from_the_start(self) -> None:
        assert rm.max_drawdown_from_returns([-0.1, -0.1]) == pytest.approx(0.19, rel=1e-12)

    def test_only_gains_is_zero_and_empty_is_none(self) -> None:
        assert rm.max_drawdown_from_returns([0.01, 0.02]) == 0
        assert rm.max_drawdown_from_returns([]) is None


class TestBeta:
    def test_hand_made(self) -> None:
        benchmark = np.array([0.01, -0.01, 0.02, -0.02])
        assert rm.beta(2 * benchmark + 0.001, benchmark) == pytest.approx(2.0, rel=1e-12)

    @pytest.mark.parametrize("benchmark", [[0.01, 0.01, 0.01], [0.02]])
    def test_undefined_without_benchmark_dispersion(self, benchmark: list[float]) -> None:
        assert rm.beta([0.01] * len(benchmark), benchmark) is None

    def test_refuses_misaligned_series(self) -> None:
        with pytest.raises(ValueError, match="align"):
            rm.beta([0.1, 0.2], [0.1, 0.2, 0.3])


class TestCorrelation:
    def test_matches_numpy_corrcoef(self) -> None:
        returns = seeded(300, 5)
        expected = np.corrcoef(returns, rowvar=False)
        np.testing.assert_allclose(rm.correlation_matrix(returns), expected, atol=1e-12)

    def test_opposite_holdings_correlate_minus_one(self) -> None:
        column = seeded(50, 1)[:, 0]
        corr = rm.correlation_matrix(np.column_stack([column, -2 * column]))
        np.testing.assert_allclose(corr, [[1, -1], [-1, 1]], atol=1e-12)

    def test_a_constant_holding_has_no_correlation(self) -> None:
        returns = np.column_stack([seeded(10, 1)[:, 0], np.full(10, 0.01)])
        corr = rm.correlation_matrix(returns)
        assert corr[0, 0] == 1
        assert np.isnan(corr[1]).all()
        assert np.isnan(corr[:, 1]).all()

    def test_fewer_than_two_days_have_no_correlation(self) -> None:
        assert np.isnan(rm.correlation_matrix([[0.1, 0.2]])).all()


class TestExposureAndConcentration:
    def test_gross_and_net(self) -> None:
        assert rm.exposures([100.0, -50.0, 25.0]) == rm.Exposure(gross=175.0, net=75.0)

    def test_largest_share_of_gross(self) -> None:
        assert rm.concentration([100.0, -150.0, 50.0]) == 0.5

    @pytest.mark.parametrize("values", [[], [0.0, 0.0]])
    def test_no_exposure_has_no_concentration(self, values: list[float]) -> None:
        assert rm.concentration(values) is None
        assert rm.exposures(values) == rm.Exposure(0.0, 0.0)


class TestPositionRisks:
    def test_hand_made(self) -> None:
        # PnL per day: A -10, 2, 3 and B 5, -4, 1, so the portfolio's -5, -2, 4. 95% of 3
        # scenarios: position 2 * 0.05 = 0.1, between day 0 (0.9) and day 1 (0.1).
        returns = [[-0.1, 0.05], [0.02, -0.04], [0.03, 0.01]]
        risks = rm.position_risks(returns, [100.0, 100.0], 0.95)
        assert risks is not None
        assert risks.portfolio_var == pytest.approx(4.7, rel=1e-12)  # 0.9 * 5 + 0.1 * 2
        assert risks.portfolio_es == pytest.approx(5.0, rel=1e-12)  # the worst day alone
        np.testing.assert_allclose(risks.standalone_var, [8.8, 3.5], rtol=1e-12)
        np.testing.assert_allclose(risks.marginal_var, [0.088, -0.041], rtol=1e-12)
        np.testing.assert_allclose(risks.component_var, [8.8, -4.1], rtol=1e-12)
        np.testing.assert_allclose(risks.component_es, [10.0, -5.0], rtol=1e-12)

    @FEW
    @given(holdings(), confidences)
    def test_components_sum_to_the_portfolio_figures(
        self, book: tuple[FloatArray, FloatArray], confidence: float
    ) -> None:
        risks = rm.position_risks(*book, confidence)
        assert risks is not None
        pnl = rm.portfolio_pnl(*book)
        assert close(risks.portfolio_var, -empyrical.value_at_risk(pnl, 1 - confidence))
        assert close(risks.portfolio_es, -empyrical.conditional_value_at_risk(pnl, 1 - confidence))
        scale = max(1.0, float(np.sum(np.abs(book[1]))))  # cancelling terms: relative to gross
        assert abs(float(np.sum(risks.component_var)) - risks.portfolio_var) <= 1e-9 * scale
        assert abs(float(np.sum(risks.component_es)) - risks.portfolio_es) <= 1e-9 * scale

    @pytest.mark.parametrize("confidence", CONFIDENCES)
    def test_marginal_is_the_derivative_of_var(self, confidence: float) -> None:
        returns, values = seeded(1_000, 4), np.array([1e4, -5e3, 2e4, 8e3])
        risks = rm.position_risks(returns, values, confidence)
        assert risks is not None
        step = 1e-3  # small enough that no scenario changes rank
        for i in range(4):
            bumped = values.copy()
            bumped[i] += step
            moved = rm.historical_var(rm.portfolio_pnl(returns, bumped), confidence)
            assert moved is not None
            derivative = (moved - risks.portfolio_var) / step
            assert derivative == pytest.approx(risks.marginal_var[i], rel=1e-6, abs=1e-9)

    def test_standalone_is_each_holding_var_alone(self) -> None:
        returns, values = seeded(500, 3), np.array([1e3, -2e3, 3e3])
        risks = rm.position_risks(returns, values, 0.99)
        assert risks is not None
        for i in range(3):
            alone = rm.historical_var(returns[:, i] * values[i], 0.99)
            assert close(
                float(risks.standalone_var[i]),
                -empyrical.value_at_risk(returns[:, i] * values[i], 0.01),
            )
            assert alone == pytest.approx(float(risks.standalone_var[i]), rel=1e-12)

    def test_no_scenarios(self) -> None:
        assert rm.position_risks(np.empty((0, 2)), [1.0, 2.0], 0.95) is None

    def test_refuses_misaligned_values(self) -> None:
        with pytest.raises(ValueError, match="align"):
            rm.position_risks(seeded(5, 2), [1.0, 2.0, 3.0], 0.95)


class TestInputs:
    def test_returns_from_prices(self) -> None:
        np.testing.assert_allclose(
            rm.returns_from_prices([[100.0, 10.0], [110.0, 9.0], [99.0, 9.9]]),
            [[0.1, -0.1], [-0.1, 0.1]],
            rtol=1e-12,
        )

    @pytest.mark.parametrize("bad", [0.0, -1.0, math.nan])
    def test_refuses_a_price_that_is_not_positive(self, bad: float) -> None:
        with pytest.raises(ValueError, match="positive"):
            rm.returns_from_prices([[100.0], [bad]])

    @pytest.mark.parametrize(
        ("classes", "expected"),
        [
            ([AssetClass.EQUITY, AssetClass.CRYPTO], 365),
            (["crypto"], 365),
            ([AssetClass.EQUITY], 252),
            ([], 252),
        ],
    )
    def test_periods_for(self, classes: list[AssetClass | str], expected: int) -> None:
        assert rm.periods_for(classes) == expected
