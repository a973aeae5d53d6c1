"""Performance measures of an equity series and of closed trades. Pure: no clock, no I/O.

Money-valued results (drawdown, total return, win rate, profit factor) stay `Decimal`.
The return-series statistics (volatility, Sharpe, Sortino) are floats computed with
numpy: they are estimates, never entered in the ledger.

Definitions:

- Returns are simple period returns between consecutive points, `e[i] / e[i-1] - 1`; a
  step from zero equity has no return and is left out.
- Max drawdown is the largest fall from a running peak, as a fraction of that peak.
- Annualisation assumes the market trades every day (crypto): a year is 365 days, and a
  series of snapshots taken every `s` seconds has `365 * 86400 / s` periods a year, with
  `s` the median spacing (robust to a gap while the service was down).
- Sharpe is `mean(x) / stdev(x) * sqrt(periods_per_year)` of the excess returns
  `x = r - risk_free`, with `risk_free` a rate per period (default 0) and the sample
  standard deviation (ddof=1); Sortino replaces the stdev by the downside deviation
  `sqrt(mean(min(x, 0)^2))` over all periods, `risk_free` being its target. Both are
  None when undefined: fewer than two returns, or no dispersion (no downside for
  Sortino). These are empyrical's definitions (docs/metrics.md), tested against it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from itertools import pairwise
from statistics import median

import numpy as np
import numpy.typing as npt

SECONDS_PER_YEAR = 365 * 24 * 60 * 60
# A per-period standard deviation below this is float noise around a flat series: the
# ratio would be an artefact (and could overflow the NUMERIC column it is stored in).
_MIN_DISPERSION = 1e-12

# The return-series statistics take a list or a numpy array (a backtest's returns).
Returns = Sequence[float] | npt.NDArray[np.float64]


def simple_returns(equity: Sequence[Decimal]) -> list[float]:
    """Returns between consecutive points; a step from zero equity is left out."""
    return [float(current / previous - 1) for previous, current in pairwise(equity) if previous > 0]


def total_return(equity: Sequence[Decimal]) -> Decimal | None:
    """Last over first, minus one; None for fewer than two points or a zero start."""
    if len(equity) < 2 or equity[0] <= 0:
        return None
    return equity[-1] / equity[0] - 1


def drawdowns(equity: Sequence[Decimal]) -> list[Decimal]:
    """Each point's fall from the running peak, as a fraction of the peak (0 at a peak)."""
    result: list[Decimal] = []
    peak = Decimal(0)
    for value in equity:
        peak = max(peak, value)
        result.append((peak - value) / peak if peak > 0 else Decimal(0))
    return result


def max_drawdown(equity: Sequence[Decimal]) -> Decimal:
    """The largest fall from a running peak as a fraction of that peak; 0 when none."""
    return max(drawdowns(equity), default=Decimal(0))


def periods_per_year(timestamps: Sequence[datetime]) -> float | None:
    """How many periods of the series' median spacing fit in a year; None when fewer
    than two points or the points share one instant."""
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(timestamps)]
    if not gaps:
        return None
    spacing = median(gaps)
    if spacing <= 0:
        return None
    return SECONDS_PER_YEAR / spacing


def cagr(total_return: Decimal | None, steps: int, periods: float | None) -> float | None:
    """Compound annual growth: (1 + total return) ^ (periods per year / steps) - 1, the
    growth over `steps` candle spacings compounded to a year; None when undefined or too
    large for a float (a short run extrapolated to a year can be)."""
    if total_return is None or periods is None or steps < 1:
        return None
    growth = 1.0 + float(total_return)
    if growth <= 0:
        return -1.0
    try:
        return math.expm1(math.log(growth) * periods / steps)
    except OverflowError:
        return None


def volatility(returns: Returns, periods: float) -> float | None:
    """Annualised sample standard deviation of the returns; None for fewer than two."""
    if len(returns) < 2:
        return None
    return float(np.std(returns, ddof=1)) * math.sqrt(periods)


def sharpe_ratio(returns: Returns, periods: float, *, risk_free: float = 0.0) -> float | None:
    """Annualised mean over sample stdev of the returns in excess of `risk_free` per
    period; None when undefined."""
    if len(returns) < 2:
        return None
    excess = np.asarray(returns, dtype=float) - risk_free
    deviation = float(np.std(excess, ddof=1))
    if deviation < _MIN_DISPERSION:
        return None
    return float(np.mean(excess)) / deviation * math.sqrt(periods)


def sortino_ratio(returns: Returns, periods: float, *, risk_free: float = 0.0) -> float | None:
    """Annualised mean excess over downside deviation below `risk_free` per period; None
    without a period below it."""
    if len(returns) < 2:
        return None
    excess = np.asarray(returns, dtype=float) - risk_free
    downside = float(np.sqrt(np.mean(np.minimum(excess, 0.0) ** 2)))
    if downside < _MIN_DISPERSION:
        return None
    return float(np.mean(excess)) / downside * math.sqrt(periods)


def win_rate(winning: int, closed: int) -> Decimal | None:
    """Winning closed trades over all closed trades (break-evens count as not winning)."""
    if closed <= 0:
        return None
    return Decimal(winning) / Decimal(closed)


def profit_factor(results: Sequence[Decimal]) -> Decimal | None:
    """Gross profit over gross loss of the trades' net results; None without a loss."""
    gross_loss = -sum((r for r in results if r < 0), Decimal(0))
    if gross_loss == 0:
        return None
    return sum((r for r in results if r > 0), Decimal(0)) / gross_loss
