"""Risk measures of a portfolio from the daily returns of its holdings. Pure: no clock, no I/O.

Every result is a float estimate computed with numpy, never a ledger amount. Definitions,
units and conventions, with the independent implementation they are tested against
(empyrical-reloaded), are in docs/metrics.md; each function states its formula.

Shapes: `returns` is `[T, N]`, T daily returns (oldest first) of N holdings; `values` is
`[N]`, each holding's signed market value now (negative for a short), in the account's
currency. A scenario is one historical day: the portfolio's PnL had it been held through
that day's returns. Inputs must be finite: NaN propagates into the results.

Conventions:

- VaR and expected shortfall (ES) are reported as positive losses, in the units of the
  series given (currency for PnL, a fraction for returns). They are negative when even
  the tail scenario is a gain.
- The historical quantile at confidence `c` is numpy's linear interpolation (Hyndman and
  Fan's type 7) at `1 - c` of the sorted scenarios: position `(T - 1) * (1 - c)`, as
  `empyrical.value_at_risk` computes it. ES averages the `floor((T - 1) * (1 - c)) + 1`
  worst scenarios, as `empyrical.conditional_value_at_risk` does: without ties these are
  exactly the scenarios at or below the VaR quantile.
- Horizons scale by the square root of time (independent, identically distributed,
  zero-mean daily PnL); `scale_to_horizon` says so where it is applied.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from models.enums import AssetClass

FloatArray = npt.NDArray[np.float64]

# Periods per year of daily closes: crypto trades every day, equities on ~252 sessions.
CRYPTO_PERIODS_PER_YEAR = 365
EQUITY_PERIODS_PER_YEAR = 252
# A benchmark's variance below this is float noise around a flat series (a stdev of
# 1e-12, the threshold utils.performance uses for Sharpe): its beta would be an artefact.
_MIN_VARIANCE = 1e-24
_NORMAL = NormalDist()


class Exposure(NamedTuple):
    """Gross (sum of |value|) and net (sum of signed value) exposure, in currency."""

    gross: float
    net: float


@dataclass(frozen=True, slots=True)
class PositionRisks:
    """Each holding's share of the portfolio's historical VaR and ES, arrays of shape [N].

    - `standalone_var`: the holding's own historical VaR, held alone (currency).
    - `marginal_var`: dVaR/dvalue, the VaR added per unit of currency added to the holding:
      minus its return on the VaR scenario (interpolated as the quantile is).
    - `component_var`: `value * marginal_var` (Euler allocation); sums to `portfolio_var`.
    - `component_es`: minus the holding's mean PnL over the ES tail; sums to `portfolio_es`.
    """

    portfolio_var: float
    portfolio_es: float
    standalone_var: FloatArray
    marginal_var: FloatArray
    component_var: FloatArray
    component_es: FloatArray


def periods_for(asset_classes: Iterable[AssetClass | str]) -> int:
    """Periods per year of daily closes: 365 when any holding is crypto (it trades every
    day, so the portfolio's value moves every day), else 252 trading days."""
    if any(asset_class == AssetClass.CRYPTO for asset_class in asset_classes):
        return CRYPTO_PERIODS_PER_YEAR
    return EQUITY_PERIODS_PER_YEAR


def returns_from_prices(prices: npt.ArrayLike) -> FloatArray:
    """Simple returns `p[t] / p[t-1] - 1` of closes `[T + 1, N]` (or `[T + 1]`), oldest first.

    Raises ValueError on a price that is not finite and positive: a return from it is
    undefined, and silently dropping the day would misalign the holdings' scenarios.
    """
    array = np.asarray(prices, dtype=np.float64)
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError("prices must be finite and positive")
    returns: FloatArray = array[1:] / array[:-1] - 1.0
    return returns


def portfolio_pnl(returns: npt.ArrayLike, values: npt.ArrayLike) -> FloatArray:
    """Scenario PnL `[T]` of holding `values` through each day's returns: `returns @ values`."""
    matrix = np.asarray(returns, dtype=np.float64)
    weights = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2 or weights.ndim != 1 or matrix.shape[1] != weights.shape[0]:
        raise ValueError(f"returns {matrix.shape} and values {weights.shape} do not align")
    pnl: FloatArray = matrix @ weights
    return pnl


def historical_var(pnl: npt.ArrayLike, confidence: float) -> float | None:
    """Historical VaR: `-percentile(pnl, 100 * (1 - confidence))`, linear interpolation.

    None for an empty series.
    """
    tail = _tail(confidence)
    series = np.asarray(pnl, dtype=np.float64)
    return _var(series, tail) if series.size else None


def historical_es(pnl: npt.ArrayLike, confidence: float) -> float | None:
    """Historical expected shortfall: minus the mean of the `k + 1` worst scenarios,
    `k = floor((T - 1) * (1 - confidence))`. None for an empty series."""
    tail = _tail(confidence)
    series = np.asarray(pnl, dtype=np.float64)
    return _es(series, tail) if series.size else None


def parametric_var(mean: float, std: float, confidence: float) -> float:
    """Normal (variance-covariance) VaR: `z * std - mean`, `z = Phi^-1(confidence)`.

    `mean` and `std` are the scenario PnL's (or return's) mean and standard deviation, in
    the units the VaR is wanted in; the estimate is only as good as the normal fit.
    """
    _tail(confidence)
    return _NORMAL.inv_cdf(confidence) * std - mean


def parametric_es(mean: float, std: float, confidence: float) -> float:
    """Normal expected shortfall: `std * phi(z) / (1 - confidence) - mean`, `z` as above."""
    tail = _tail(confidence)
    return std * _NORMAL.pdf(_NORMAL.inv_cdf(confidence)) / tail - mean


def scale_to_horizon(var_1d: float, days: float) -> float:
    """A one-day VaR (or ES) over `days`: `var_1d * sqrt(days)`, the square-root-of-time rule.

    Exact for independent, identically distributed, zero-mean normal daily PnL; an
    approximation otherwise (fat tails and trends are not scaled). For a normal PnL with
    a drift, `parametric_var(mean * days, std * sqrt(days), c)` is the exact figure.
    """
    if days <= 0:
        raise ValueError(f"a horizon is a positive number of days, not {days}")
    return var_1d * math.sqrt(days)


def max_drawdown_from_returns(returns: npt.ArrayLike) -> float | None:
    """Largest fall of compounded wealth from its running peak, a fraction of the peak.

    Wealth starts at 1 before the first return (so a first-day loss is a drawdown), then
    `w[t] = w[t-1] * (1 + r[t])`; the result is `max(1 - w / running_max(w))`, 0 without
    a fall. None for an empty series.
    """
    series = np.asarray(returns, dtype=np.float64)
    if series.size == 0:
        return None
    wealth = np.concatenate(([1.0], np.cumprod(1.0 + series)))
    peaks = np.maximum.accumulate(wealth)
    return float(np.max(1.0 - wealth / peaks))


def beta(returns: npt.ArrayLike, benchmark_returns: npt.ArrayLike) -> float | None:
    """Beta against a benchmark: `cov(r, b) / var(b)`, both with ddof 0 (the ddof cancels).

    The two series are aligned (same days, same length). None for fewer than two days or
    a benchmark without dispersion.
    """
    series = np.asarray(returns, dtype=np.float64)
    bench = np.asarray(benchmark_returns, dtype=np.float64)
    if series.shape != bench.shape or series.ndim != 1:
        raise ValueError(f"returns {series.shape} and benchmark {bench.shape} do not align")
    if series.size < 2:
        return None
    centred = bench - np.mean(bench)
    variance = float(np.mean(centred * centred))
    if variance < _MIN_VARIANCE:
        return None
    return float(np.mean(centred * series)) / variance


def correlation_matrix(returns: npt.ArrayLike) -> FloatArray:
    """Pearson correlation `[N, N]` of the holdings' returns `[T, N]`.

    A holding whose returns do not vary (or fewer than two days) has no correlation: its
    row and column are NaN, its diagonal included.
    """
    matrix = np.asarray(returns, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"returns must be [T, N], not {matrix.shape}")
    if matrix.shape[0] < 2:
        return np.full((matrix.shape[1], matrix.shape[1]), np.nan)
    # Equal values, not a small norm, say "constant": the float residue of centring a
    # constant column (~1e-18) would otherwise divide into an arbitrary correlation.
    varies = np.ptp(matrix, axis=0) > 0
    centred = matrix - np.mean(matrix, axis=0)
    norms = np.sqrt(np.sum(centred * centred, axis=0))
    scale = np.where(varies, norms, np.nan)
    corr: FloatArray = (centred.T @ centred) / np.outer(scale, scale)
    # Rounding can take |corr| a hair past 1; a holding correlates exactly 1 with itself.
    np.clip(corr, -1.0, 1.0, out=corr)
    np.fill_diagonal(corr, np.where(varies, 1.0, np.nan))
    return corr


def exposures(values: npt.ArrayLike) -> Exposure:
    """Gross `sum(|v|)` and net `sum(v)` exposure of signed position values."""
    array = np.asarray(values, dtype=np.float64)
    return Exposure(gross=float(np.sum(np.abs(array))), net=float(np.sum(array)))


def concentration(values: npt.ArrayLike) -> float | None:
    """The largest position's share of gross exposure, `max|v| / sum|v|` in (0, 1].

    None without exposure (no positions, or all worth zero).
    """
    magnitudes = np.abs(np.asarray(values, dtype=np.float64))
    gross = float(np.sum(magnitudes))
    if gross <= 0:
        return None
    return float(np.max(magnitudes)) / gross


def position_risks(
    returns: npt.ArrayLike, values: npt.ArrayLike, confidence: float
) -> PositionRisks | None:
    """Standalone, marginal and component historical VaR and component ES of each holding.

    With the portfolio's scenarios sorted by PnL, the VaR quantile interpolates between
    the scenarios at `floor(g)` and `floor(g) + 1`, `g = (T - 1) * (1 - confidence)`,
    weight `gamma = g - floor(g)` on the second. A holding's marginal VaR is minus its
    return interpolated the same way on those two days; its component VaR is that times
    its value, so components sum to the portfolio VaR (tied scenarios are ordered by day).
    Component ES is minus its mean PnL over the ES tail scenarios. None without scenarios.
    """
    tail = _tail(confidence)
    matrix = np.asarray(returns, dtype=np.float64)
    weights = np.asarray(values, dtype=np.float64)
    pnl = portfolio_pnl(matrix, weights)
    days = pnl.size
    if days == 0:
        return None
    order = np.argsort(pnl, kind="stable")
    # The same virtual index np.percentile computes for the portfolio's VaR.
    position = (days - 1) * ((100 * tail) / 100)
    lower = math.floor(position)
    upper = min(lower + 1, days - 1)
    gamma = position - lower
    marginal = -((1 - gamma) * matrix[order[lower]] + gamma * matrix[order[upper]])
    worst = order[: int((days - 1) * tail) + 1]
    holding_pnl = matrix * weights
    return PositionRisks(
        portfolio_var=_var(pnl, tail),
        portfolio_es=_es(pnl, tail),
        standalone_var=-np.percentile(holding_pnl, 100 * tail, axis=0),
        marginal_var=marginal,
        component_var=weights * marginal,
        component_es=-np.mean(holding_pnl[worst], axis=0),
    )


def _tail(confidence: float) -> float:
    """The tail probability `1 - confidence`; confidence must lie strictly in (0, 1)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence is a probability in (0, 1), not {confidence}")
    return 1.0 - confidence


def _var(series: FloatArray, tail: float) -> float:
    """Minus the linear-interpolated `tail` quantile of a non-empty series."""
    return -float(np.percentile(series, 100 * tail))


def _es(series: FloatArray, tail: float) -> float:
    """Minus the mean of the `floor((n - 1) * tail) + 1` smallest of a non-empty series."""
    k = int((series.size - 1) * tail)
    return -float(np.mean(np.partition(series, k)[: k + 1]))
