"""Backtest of a moving-average crossover over 1,000,000 one-minute candles: the
vectorised fast path against the reference loop. Goal: the fast path under 1 s.

The candles are generated, seeded: a BTC-like random walk from 97,000 (55% annual
volatility, per minute), prices to the cent, each candle opening at the previous close
with wicks beyond its body, random volumes. The strategy is the built-in trend
following one (SMA 50 over SMA 200); costs are the simulated BTC/USD pair's (20 bps
taker fee, quantity step 0.00001) plus 1 bps of slippage and a tenth of each fill
candle's range, all-in from 100,000 USD.

One fast-path measurement is what `BacktestService.execute` does once it has the candles
in memory: the float series for the signals, the strategy's signals (position,
strength, confidence per candle), then `run_vectorized` (the fills, the exact integer
ledger, the equity curve, the metrics). Its median and worst of `--runs` are printed,
and the two parts apart.

The reference loop (`run_reference`, Decimal, one candle at a time) is timed on the
first `--reference-candles` candles (default: all of them) with the same signals; on a
subset its time is extrapolated linearly to the whole series, and the output says so.
The check: the fast path's result on the same candles is identical to the reference's
(every trade's times, prices, quantities, fees and PnL to the digit, the equity curve
bit for bit, the metrics); the script exits 1 when it is not, or when the goal is missed.

Times are wall-clock (`time.perf_counter`).

    .venv/bin/python benchmarks/backtest.py [--candles 1000000] [--runs 5]
        [--reference-candles N] [--seed 11]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import numpy as np

# Run as a script: the repository root is not on the path otherwise.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.strategy_params import TrendFollowingParams
from services.backtests.engine import BacktestConfig, BacktestResult, CandleSeries, run_reference
from services.backtests.signals import Signals, signals_for
from services.backtests.vectorized import run_vectorized

GOAL_SECONDS = 1.0
MINUTES_PER_YEAR = 365 * 24 * 60
STRATEGY = TrendFollowingParams(fast_window=50, slow_window=200, average="sma")
CONFIG = BacktestConfig(
    initial_cash=Decimal(100_000),
    fee_bps=Decimal(20),
    slippage_bps=Decimal(1),
    slippage_range_share=Decimal("0.1"),
    quantity_step=Decimal("0.00001"),
)
T = TypeVar("T")


def generate(candles: int, seed: int) -> CandleSeries:
    """One-minute candles of a seeded random walk, prices to the cent."""
    rng = np.random.default_rng(seed)
    sigma = 0.55 / np.sqrt(MINUTES_PER_YEAR)
    close = np.round(97_000 * np.exp(np.cumsum(rng.normal(0, sigma, candles))), 2)
    open_ = np.concatenate(([97_000.0], close[:-1]))
    wick = np.abs(rng.normal(0, sigma / 2, (2, candles))) * close
    high = np.round(np.maximum(open_, close) + wick[0], 2)
    low = np.round(np.minimum(open_, close) - wick[1], 2)
    times = np.datetime64("2024-01-01T00:00") + np.arange(candles) * np.timedelta64(60, "s")
    return CandleSeries.from_prices(times, open_, high, low, close, rng.gamma(2.0, 1.5, candles))


def timed(action: Callable[[], T]) -> tuple[float, T]:
    began = time.perf_counter()
    value = action()
    return time.perf_counter() - began, value


def fast_path(series: CandleSeries) -> tuple[float, float, Signals, BacktestResult]:
    """One fast-path run: the seconds of the signals and of the engine, and their output."""
    signal_time, signals = timed(lambda: signals_for(series.ohlcv(), STRATEGY))
    engine_time, result = timed(lambda: run_vectorized(series, signals.position, CONFIG))
    return signal_time, engine_time, signals, result


def identical(fast: BacktestResult, reference: BacktestResult) -> bool:
    return (
        fast.trades == reference.trades
        and repr(fast.trades) == repr(reference.trades)
        and repr(fast.open_position) == repr(reference.open_position)
        and np.array_equal(fast.equity, reference.equity)
        and np.array_equal(fast.in_market, reference.in_market)
        and repr((fast.final_cash, fast.final_equity))
        == repr((reference.final_cash, reference.final_equity))
        and fast.metrics == reference.metrics
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reference-candles", type=int, default=None)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    n = args.candles
    subset = min(n, args.reference_candles or n)

    generation, series = timed(lambda: generate(n, args.seed))
    print(
        f"{n:,} one-minute candles (seed {args.seed}, generated in {generation:.2f} s); "
        f"SMA {STRATEGY.fast_window}/{STRATEGY.slow_window} crossover, fee "
        f"{CONFIG.fee_bps} bps, slippage {CONFIG.slippage_bps} bps + "
        f"{CONFIG.slippage_range_share} x range"
    )

    fast_path(series.head(10_000))  # warm numpy's code paths before timing
    runs = [fast_path(series) for _ in range(args.runs)]
    totals = [signal_time + engine_time for signal_time, engine_time, _, _ in runs]
    median = statistics.median(totals)
    worst = max(totals)
    signal_median = statistics.median(run[0] for run in runs)
    engine_median = statistics.median(run[1] for run in runs)
    signals, result = runs[-1][2], runs[-1][3]

    metrics = result.metrics
    print(
        f"{metrics.trades:,} trades, exposure {metrics.exposure:.1%}, total return "
        f"{float(metrics.total_return or 0):.4%} (fees and slippage on a random walk), "
        f"final equity {result.final_equity:,.2f}"
    )
    print(
        f"\n{'fast path (signals + engine)':<34} {'median s':>9} {'worst s':>9} {'candles/s':>13}"
    )
    print(f"{'vectorized, whole run':<34} {median:>9.3f} {worst:>9.3f} {n / median:>13,.0f}")
    print(f"{'  of which the signals':<34} {signal_median:>9.3f}")
    print(f"{'  of which the engine':<34} {engine_median:>9.3f}")

    head = series.head(subset)
    wanted_head = signals.position[:subset]
    reference_time, reference = timed(lambda: run_reference(head, wanted_head, CONFIG))
    fast_head = result if subset == n else run_vectorized(head, wanted_head, CONFIG)
    same = identical(fast_head, reference)
    full_reference = reference_time * n / subset
    label = "reference loop" if subset == n else f"reference loop, {subset:,} candles"
    print(f"{label:<34} {reference_time:>9.3f} {'':>9} {subset / reference_time:>13,.0f}")
    if subset < n:
        print(f"{'  extrapolated to ' + format(n, ',') + ' candles':<34} {full_reference:>9.3f}")
    print(f"\nspeed-up at the median: {full_reference / median:,.1f}x")
    print(
        f"check on {subset:,} candles ({len(reference.trades):,} trades): "
        f"{'identical' if same else 'DIFFERENT'}"
    )
    verdict = "met" if worst < GOAL_SECONDS else "NOT met"
    print(f"goal < {GOAL_SECONDS:.0f} s on the fast path (worst of {args.runs}): {verdict}")
    if not same or worst >= GOAL_SECONDS:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
