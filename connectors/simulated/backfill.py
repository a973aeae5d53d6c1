"""The deterministic backfill: candles before the start, so a fresh install has charts."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal

from connectors.base import Candle
from connectors.simulated.sampling import (
    SECONDS_PER_DAY,
    SECONDS_PER_YEAR,
    poisson,
    seeded_rng,
    to_ticks,
)
from connectors.universe import SymbolSpec
from utils.candles import timeframe_delta


def backfill(
    spec: SymbolSpec, *, seed: int, timeframe: str, before: datetime, count: int
) -> list[Candle]:
    """`count` candles ending at `before`, oldest first, walked backwards from the start price.

    The candle just before `before` closes at the start price, so live candles continue it.
    """
    rules = spec.rules
    tick, step = rules.tick_size, rules.step_size
    rng = seeded_rng(seed, spec.symbol, f"backfill/{timeframe}")
    delta = timeframe_delta(timeframe)
    seconds = delta.total_seconds()
    years = seconds / SECONDS_PER_YEAR
    sigma = spec.annual_volatility * math.sqrt(years)
    drift = (spec.annual_drift - spec.annual_volatility**2 / 2) * years
    expected_jumps = spec.jumps_per_day * seconds / SECONDS_PER_DAY
    mean_volume = float(spec.daily_volume / step) * seconds / SECONDS_PER_DAY
    trades_per_candle = spec.trades_per_second * seconds
    close = to_ticks(spec.start_price, tick)
    candles: list[Candle] = []
    for k in range(1, count + 1):
        log_return = drift + sigma * rng.gauss()
        jumps = poisson(rng, expected_jumps)
        if jumps:
            log_return += rng.gauss(0.0, spec.jump_volatility * math.sqrt(jumps))
        open_ = max(1, round(close * math.exp(-log_return)))
        # High and low: exact samples of a Brownian bridge's extremes between open and close.
        a, b = math.log(open_), math.log(close)
        gap = (b - a) ** 2
        up = math.sqrt(gap - 2 * sigma * sigma * math.log(1.0 - rng.random()))
        down = math.sqrt(gap - 2 * sigma * sigma * math.log(1.0 - rng.random()))
        high = max(open_, close, round(math.exp((a + b + up) / 2)))
        low = max(1, min(open_, close, round(math.exp((a + b - down) / 2))))
        trades = poisson(rng, trades_per_candle)
        volume = round(mean_volume * rng.lognormvariate(-0.125, 0.5)) if trades else 0
        candles.append(
            Candle(
                symbol=spec.symbol,
                timeframe=timeframe,
                open_time=before - delta * k,
                open=Decimal(open_) * tick,
                high=Decimal(high) * tick,
                low=Decimal(low) * tick,
                close=Decimal(close) * tick,
                volume=Decimal(volume) * step,
                trades=trades,
            )
        )
        close = open_
    candles.reverse()
    return candles
