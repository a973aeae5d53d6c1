"""Technical indicators over Decimal closes, computed with numpy.

Inputs are `Decimal` closes (oldest first), as the ledger and the market feed keep them.
Outputs are float64: indicators are analytics on a price series, never money, so they
never flow back into an order's price or quantity. Series functions return an array as
long as the input with NaN where the window is not yet full; `indicator_snapshot` gives
the latest values (None where there is too little data) for an agent's context.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from models.decisions import IndicatorParams, IndicatorSnapshot
from models.enums import OrderSide

FloatArray = npt.NDArray[np.float64]


def as_array(closes: Sequence[Decimal] | FloatArray) -> FloatArray:
    if isinstance(closes, np.ndarray):
        return closes.astype(np.float64, copy=False)
    return np.array([float(c) for c in closes], dtype=np.float64)


def _nan(n: int) -> FloatArray:
    return np.full(n, np.nan, dtype=np.float64)


def sma(closes: Sequence[Decimal] | FloatArray, period: int) -> FloatArray:
    """Simple moving average; NaN for the first period-1 entries."""
    values = as_array(closes)
    out = _nan(len(values))
    if period < 1 or len(values) < period:
        return out
    window_sums = np.convolve(values, np.ones(period), mode="valid")
    out[period - 1 :] = window_sums / period
    return out


def ema(closes: Sequence[Decimal] | FloatArray, period: int) -> FloatArray:
    """Exponential moving average (alpha 2/(period+1)), seeded with the SMA of the first
    full window; leading NaNs in the input (an EMA of an EMA) are skipped."""
    values = as_array(closes)
    out = _nan(len(values))
    valid = np.flatnonzero(~np.isnan(values))
    if period < 1 or len(valid) < period:
        return out
    start = int(valid[0])
    seed_end = start + period
    alpha = 2.0 / (period + 1)
    current = float(values[start:seed_end].mean())
    out[seed_end - 1] = current
    for i in range(seed_end, len(values)):
        current = alpha * float(values[i]) + (1 - alpha) * current
        out[i] = current
    return out


def rsi(closes: Sequence[Decimal] | FloatArray, period: int = 14) -> FloatArray:
    """Wilder's RSI (0..100). 100 when there were no losses, 50 when nothing moved."""
    values = as_array(closes)
    out = _nan(len(values))
    if period < 1 or len(values) <= period:
        return out
    changes = np.diff(values)
    gains = np.clip(changes, 0, None)
    losses = np.clip(-changes, 0, None)
    avg_gain = float(gains[:period].mean())
    avg_loss = float(losses[:period].mean())
    out[period] = _rsi_value(avg_gain, avg_loss)
    for i in range(period, len(changes)):
        avg_gain = (avg_gain * (period - 1) + float(gains[i])) / period
        avg_loss = (avg_loss * (period - 1) + float(losses[i])) / period
        out[i + 1] = _rsi_value(avg_gain, avg_loss)
    return out


def _rsi_value(avg_gain: float, avg_loss: float) -> float:
    if avg_loss == 0:
        return 50.0 if avg_gain == 0 else 100.0
    return 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)


def bollinger(
    closes: Sequence[Decimal] | FloatArray, period: int = 20, k: float = 2.0
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(upper, middle, lower): the SMA plus/minus k population standard deviations."""
    values = as_array(closes)
    middle = sma(values, period)
    width = _nan(len(values))
    if period >= 1 and len(values) >= period:
        windows = np.lib.stride_tricks.sliding_window_view(values, period)
        width[period - 1 :] = windows.std(axis=1) * k
    return middle + width, middle, middle - width


def macd(
    closes: Sequence[Decimal] | FloatArray, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(macd line, signal line, histogram): EMA(fast) - EMA(slow), its EMA(signal), and
    their difference."""
    values = as_array(closes)
    line = ema(values, fast) - ema(values, slow)
    signal_line = ema(line, signal)
    return line, signal_line, line - signal_line


def simple_returns(closes: Sequence[Decimal] | FloatArray) -> FloatArray:
    """close[i] / close[i-1] - 1; one shorter than the input."""
    values = as_array(closes)
    if len(values) < 2:
        return np.empty(0, dtype=np.float64)
    return values[1:] / values[:-1] - 1.0


def log_returns(closes: Sequence[Decimal] | FloatArray) -> FloatArray:
    values = as_array(closes)
    if len(values) < 2:
        return np.empty(0, dtype=np.float64)
    return np.diff(np.log(values))


def volatility(closes: Sequence[Decimal] | FloatArray, window: int | None = None) -> float | None:
    """Sample standard deviation of log returns per candle (over the last `window`
    returns if given); None with fewer than two returns."""
    returns = log_returns(closes)
    if window is not None:
        returns = returns[-window:]
    if len(returns) < 2:
        return None
    return float(returns.std(ddof=1))


def momentum(closes: Sequence[Decimal] | FloatArray, lookback: int) -> float | None:
    """Return over the last `lookback` candles: close[-1] / close[-1-lookback] - 1."""
    values = as_array(closes)
    if lookback < 1 or len(values) <= lookback:
        return None
    return float(values[-1] / values[-1 - lookback] - 1.0)


def last_crossover(fast: FloatArray, slow: FloatArray) -> tuple[OrderSide, int] | None:
    """Direction of the most recent fast/slow crossover (buy = fast crossed above) and how
    many candles ago it happened (0 = on the last candle); None if they never crossed."""
    diff = fast - slow
    valid = ~np.isnan(diff)
    sign = np.sign(diff)
    last_index = len(diff) - 1
    for i in range(last_index, 0, -1):
        if not (valid[i] and valid[i - 1]):
            break
        # Touching (diff == 0) is not a cross; only a strict change of side counts.
        if sign[i] > 0 and sign[i - 1] <= 0:
            return OrderSide.BUY, last_index - i
        if sign[i] < 0 and sign[i - 1] >= 0:
            return OrderSide.SELL, last_index - i
    return None


def _last(series: FloatArray, back: int = 0) -> float | None:
    if len(series) <= back:
        return None
    value = float(series[-1 - back])
    return None if math.isnan(value) else value


def indicator_snapshot(
    closes: Sequence[Decimal], params: IndicatorParams | None = None
) -> IndicatorSnapshot:
    """The latest value of every indicator the agents use, for an agent's context."""
    p = params or IndicatorParams()
    values = as_array(closes)
    fast = sma(values, p.sma_fast)
    slow = sma(values, p.sma_slow)
    upper, middle, lower = bollinger(values, p.bollinger_period, p.bollinger_k)
    line, signal_line, histogram = macd(values, p.ema_fast, p.ema_slow, p.macd_signal)
    cross = last_crossover(fast, slow)
    return IndicatorSnapshot(
        params=p,
        sample_size=len(values),
        last_close=_last(values),
        sma_fast=_last(fast),
        sma_slow=_last(slow),
        sma_fast_prev=_last(fast, 1),
        sma_slow_prev=_last(slow, 1),
        sma_cross=cross[0] if cross else None,
        sma_cross_age=cross[1] if cross else None,
        ema_fast=_last(ema(values, p.ema_fast)),
        ema_slow=_last(ema(values, p.ema_slow)),
        rsi=_last(rsi(values, p.rsi_period)),
        bollinger_upper=_last(upper),
        bollinger_middle=_last(middle),
        bollinger_lower=_last(lower),
        macd=_last(line),
        macd_signal=_last(signal_line),
        macd_histogram=_last(histogram),
        momentum_return=momentum(values, p.momentum_lookback),
        volatility=volatility(values),
    )
