"""The built-in strategies' signals over one candle series. Pure numpy, no I/O, no clock.

Input: the candles' open, high, low, close and volume as float arrays, oldest first.
Output, per candle (`Signals`):

- `position`: what the strategy wants to hold after that candle **closes**: 1 long,
  0 flat. Spot and long-only, like the paper exchange: a bearish reading means flat.
  A backtest trades a change of it at the next candle's open (services/backtests/).
- `strength` (0-100): how far the indicator stands from the level that would flip the
  view, on the strategy's own scale: 100 at or beyond the full scale, 0 on the level.
- `confidence` (0-1): the participation behind the candle, from its volume relative to
  the average volume of the strategy's window: `r / (1 + r)` with `r = volume / mean`,
  so 0.5 at average volume, towards 1 on heavy volume, 0 on none; 0.5 when the whole
  window traded nothing (no volume information).

Where a strategy's indicator is not yet defined (its window is not full) the position
is flat and strength and confidence are 0. A strategy that holds its view until an
exit condition (mean reversion, RSI, breakout) keeps it through candles where its
indicator is undefined (a window without dispersion), with strength and confidence 0.

**No look-ahead.** The value at candle i is computed from candles 0..i only, so cutting
the series after candle i leaves the first i + 1 values unchanged, bit for bit (the
tests check it by truncation): averages are trailing windows, channels use the candles
before i, recursions (EMA, RSI) run forwards.

Strength, per strategy (ATR is the mean true range over the named window):

| Strategy | Distance to the flip level | Full scale |
|---|---|---|
| trend following | `abs(fast - slow)` | 2 ATR (slow window) |
| mean reversion | long: `exit_z - z`; flat: `z + entry_z` | `entry_z + exit_z` |
| momentum, RSI | long: `rsi - exit`; flat: `entry - rsi` | `entry - exit` |
| momentum, ROC | `abs(close - close[i - window] * (1 + threshold))` | 2 ATR (window) |
| breakout | long: `close - exit_low`; flat: `entry_high - close` | 2 ATR (entry window) |
| arbitrage | as mean reversion, on the spread's z-score | `entry_z + exit_z` |

Indicators (`Signals.indicators`, per candle, NaN where undefined): trend following
`fast`, `slow`, `atr`; mean reversion `middle`, `sigma`, `z`; RSI `rsi`; ROC `roc`,
`atr`; breakout `entry_high`, `exit_low`, `atr`. The look-ahead check compares them.

Arbitrage reads two series, the traded symbol's and its reference's at the same open
times (`aligned` keeps only the times both have): its indicator is the spread
`log(close / reference close)`, as a z-score over the window.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from models.strategy_params import (
    ArbitrageParams,
    BreakoutParams,
    MeanReversionParams,
    RocMomentumParams,
    RsiMomentumParams,
    StrategyParams,
    TrendFollowingParams,
)
from utils import indicators

T = TypeVar("T")
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
PositionArray = npt.NDArray[np.int8]

# A price distance of this many average true ranges is full strength.
FULL_SCALE_ATRS = 2.0
# Relative float noise: averages of a flat series differ by rounding only, and a window
# that did not move has no z-score. Below this share of the price, a gap is no gap.
FLAT = 1e-9

_FIELDS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True, slots=True)
class Ohlcv:
    """One candle series as float arrays of equal length, oldest first."""

    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __post_init__(self) -> None:
        length = len(self.close)
        for name in _FIELDS:
            values = getattr(self, name)
            if values.ndim != 1 or len(values) != length:
                raise ValueError(f"{name} must be one-dimensional with {length} values")

    @classmethod
    def of(
        cls,
        open: npt.ArrayLike,
        high: npt.ArrayLike,
        low: npt.ArrayLike,
        close: npt.ArrayLike,
        volume: npt.ArrayLike,
    ) -> Ohlcv:
        arrays = (np.asarray(a, dtype=np.float64) for a in (open, high, low, close, volume))
        return cls(*arrays)

    def __len__(self) -> int:
        return len(self.close)

    def head(self, count: int) -> Ohlcv:
        """The first `count` candles: the series as it stood after candle count - 1."""
        return Ohlcv(*(getattr(self, name)[:count] for name in _FIELDS))


@dataclass(frozen=True, slots=True)
class Signals:
    """Per candle: the wanted position after its close, strength 0-100, confidence 0-1,
    and the named indicator arrays the strategy computed them from (NaN where undefined),
    which the look-ahead check compares too. The engines read `position` only."""

    position: PositionArray
    strength: FloatArray
    confidence: FloatArray
    indicators: Mapping[str, FloatArray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.position)

    def head(self, count: int) -> Signals:
        return Signals(
            self.position[:count],
            self.strength[:count],
            self.confidence[:count],
            {name: values[:count] for name, values in self.indicators.items()},
        )

    def changes(self) -> npt.NDArray[np.intp]:
        """The candles whose close changes the wanted position (from flat at the start):
        1 there is a buy signal, 0 a sell."""
        previous = np.concatenate((np.zeros(1, dtype=np.int8), self.position[:-1]))
        return np.flatnonzero(self.position != previous)


def signals_for(
    candles: Ohlcv, params: StrategyParams, *, reference: Ohlcv | None = None
) -> Signals:
    """The signals of the strategy the parameters belong to. Arbitrage also reads
    `reference`: the reference symbol's candles at the same open times (`aligned`)."""
    if isinstance(params, ArbitrageParams):
        if reference is None or len(reference) != len(candles):
            raise ValueError("arbitrage reads the reference symbol's candles, aligned")
        return arbitrage(candles, reference, params)
    if isinstance(params, TrendFollowingParams):
        return trend_following(candles, params)
    if isinstance(params, MeanReversionParams):
        return mean_reversion(candles, params)
    if isinstance(params, BreakoutParams):
        return breakout(candles, params)
    return momentum(candles, params)


def trend_following(candles: Ohlcv, params: TrendFollowingParams) -> Signals:
    """Long while the fast moving average (SMA or EMA) is above the slow one by more
    than float noise; flat otherwise, ties included."""
    average = indicators.sma if params.average == "sma" else indicators.ema
    fast = average(candles.close, params.fast_window)
    slow = average(candles.close, params.slow_window)
    valid = ~np.isnan(fast) & ~np.isnan(slow)
    gap = fast - slow
    position = (valid & (gap > FLAT * np.abs(slow))).astype(np.int8)
    atr = average_true_range(candles, params.slow_window)
    return Signals(
        position,
        _strength(np.abs(gap), FULL_SCALE_ATRS * atr, valid),
        _volume_confidence(candles.volume, params.slow_window, valid),
        {"fast": fast, "slow": slow, "atr": atr},
    )


def mean_reversion(candles: Ohlcv, params: MeanReversionParams) -> Signals:
    """Long from a close at z <= -entry_z until one at z >= exit_z, where z is the
    close's distance from the window's mean in its population standard deviations
    (the Bollinger band's)."""
    close = candles.close
    upper, middle, lower = indicators.bollinger(close, params.window, 1.0)
    sigma = (upper - lower) / 2
    valid = ~np.isnan(middle) & (sigma > FLAT * np.abs(middle))
    z = np.full(len(close), np.nan)
    np.divide(close - middle, sigma, out=z, where=valid)
    position = _hold(valid & (z <= -params.entry_z), valid & (z >= params.exit_z))
    margin = np.where(position == 1, params.exit_z - z, z + params.entry_z)
    band = np.full(len(close), params.entry_z + params.exit_z)
    return Signals(
        position,
        _strength(margin, band, valid),
        _volume_confidence(candles.volume, params.window, valid),
        {"middle": middle, "sigma": sigma, "z": z},
    )


def momentum(candles: Ohlcv, params: RsiMomentumParams | RocMomentumParams) -> Signals:
    """RSI: long from RSI >= entry until RSI <= exit. ROC: long while the return over
    `window` candles is above `threshold`."""
    if isinstance(params, RocMomentumParams):
        return _rate_of_change(candles, params)
    rsi = indicators.rsi(candles.close, params.window)
    valid = ~np.isnan(rsi)
    position = _hold(valid & (rsi >= params.entry), valid & (rsi <= params.exit))
    margin = np.where(position == 1, rsi - params.exit, params.entry - rsi)
    band = np.full(len(rsi), params.entry - params.exit)
    return Signals(
        position,
        _strength(margin, band, valid),
        _volume_confidence(candles.volume, params.window, valid),
        {"rsi": rsi},
    )


def _rate_of_change(candles: Ohlcv, params: RocMomentumParams) -> Signals:
    close = candles.close
    window = params.window
    reference = np.full(len(close), np.nan)
    if len(close) > window:
        reference[window:] = close[:-window]
    valid = ~np.isnan(reference)
    roc = close / reference - 1
    position = (valid & (roc > params.threshold)).astype(np.int8)
    distance = np.abs(close - reference * (1 + params.threshold))
    atr = average_true_range(candles, window)
    return Signals(
        position,
        _strength(distance, FULL_SCALE_ATRS * atr, valid),
        _volume_confidence(candles.volume, window, valid),
        {"roc": roc, "atr": atr},
    )


def breakout(candles: Ohlcv, params: BreakoutParams) -> Signals:
    """Long from a close above the highest high of the `entry_window` candles before it
    until a close below the lowest low of the `exit_window` candles before it."""
    close = candles.close
    entry_high = _previous_extreme(candles.high, params.entry_window, np.max)
    exit_low = _previous_extreme(candles.low, params.exit_window, np.min)
    position = _hold(close > entry_high, close < exit_low)
    valid = ~np.isnan(entry_high) & ~np.isnan(exit_low)
    margin = np.where(position == 1, close - exit_low, entry_high - close)
    atr = average_true_range(candles, params.entry_window)
    return Signals(
        position,
        _strength(margin, FULL_SCALE_ATRS * atr, valid),
        _volume_confidence(candles.volume, params.entry_window, valid),
        {"entry_high": entry_high, "exit_low": exit_low, "atr": atr},
    )


def arbitrage(candles: Ohlcv, reference: Ohlcv, params: ArbitrageParams) -> Signals:
    """Long from a close whose spread against the reference, log(close / reference
    close), is at z <= -entry_z over the trailing window until one at z >= exit_z (the
    Bollinger z-score of mean reversion, on the spread)."""
    spread = np.log(candles.close) - np.log(reference.close)
    upper, middle, lower = indicators.bollinger(spread, params.window, 1.0)
    sigma = (upper - lower) / 2
    # A spread is a log ratio near 0: its noise floor is absolute, not a share of it.
    valid = ~np.isnan(middle) & (sigma > FLAT)
    z = np.full(len(spread), np.nan)
    np.divide(spread - middle, sigma, out=z, where=valid)
    position = _hold(valid & (z <= -params.entry_z), valid & (z >= params.exit_z))
    margin = np.where(position == 1, params.exit_z - z, z + params.entry_z)
    band = np.full(len(spread), params.entry_z + params.exit_z)
    return Signals(
        position,
        _strength(margin, band, valid),
        _volume_confidence(candles.volume, params.window, valid),
        {"spread": spread, "middle": middle, "sigma": sigma, "z": z},
    )


def aligned(
    candles: Sequence[T], reference: Sequence[T], *, key: Callable[[T], object]
) -> tuple[list[T], list[T]]:
    """Both series at their common open times only, oldest first: a candle one of them
    lacks is left out of both."""
    theirs = {key(c): c for c in reference}
    both = [(c, theirs[key(c)]) for c in candles if key(c) in theirs]
    return [c for c, _ in both], [r for _, r in both]


def average_true_range(candles: Ohlcv, window: int) -> FloatArray:
    """Mean true range over the trailing `window` candles (NaN until it is full); the
    first candle's true range is its high - low."""
    close = candles.close
    previous = np.concatenate((close[:1], close[:-1]))
    true_range = np.maximum(candles.high, previous) - np.minimum(candles.low, previous)
    return indicators.sma(true_range, window)


def _hold(entries: BoolArray, exits: BoolArray) -> PositionArray:
    # The latest entry or exit at or before each candle decides (they never coincide);
    # before the first one the strategy is flat.
    marks = np.where(entries | exits, np.arange(len(entries)), -1)
    latest = np.maximum.accumulate(marks) if len(marks) else marks
    held = entries[np.maximum(latest, 0)] & (latest >= 0)
    return held.astype(np.int8)


def _previous_extreme(
    values: FloatArray, window: int, reduce: Callable[..., FloatArray]
) -> FloatArray:
    # out[i] = reduce(values[i - window : i]): the candles before i, never i itself.
    out = np.full(len(values), np.nan)
    if len(values) > window:
        windows = np.lib.stride_tricks.sliding_window_view(values[:-1], window)
        out[window:] = reduce(windows, axis=1)
    return out


def _strength(distance: FloatArray, scale: FloatArray, valid: BoolArray) -> FloatArray:
    share = np.zeros(len(distance))
    np.divide(distance, scale, out=share, where=valid & (scale > 0))
    return 100.0 * np.clip(share, 0.0, 1.0)


def _volume_confidence(volume: FloatArray, window: int, valid: BoolArray) -> FloatArray:
    mean = indicators.sma(volume, window)
    traded = valid & (mean > 0)
    ratio = np.zeros(len(volume))
    np.divide(volume, mean, out=ratio, where=traded)
    return np.where(traded, ratio / (1.0 + ratio), np.where(valid, 0.5, 0.0))
