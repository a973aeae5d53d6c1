"""Look-ahead check of a moving-average crossover with about 100 trades over 100,000
one-minute candles. Goal: the check under 10 s.

The candles are benchmarks/backtest.py's seeded BTC-like walk (`generate`). The strategy
is the built-in trend following one, SMA 150 over SMA 600 by default, which trades about
100 round trips (about 200 position changes) on them. The check is what the route runs
once it has the candles in memory: `check_lookahead` with every position change as a
cut point (no bound), i.e. the full run, then for each cut point i the signals recomputed
on the first i + 1 candles and compared with the full run's on candles 0..i.

Printed with it, in the same run:

- the recomputation alone (the same truncated runs, nothing compared), so the cost of
  the comparisons is the difference;
- the baseline of re-running the whole series at each cut point (one full signal
  computation, the median of 10 x `--runs`, times the number of cut points): what the
  check would cost if a cut did not make the recomputation shorter.

The check must find nothing (the built-ins do not look ahead); the script exits 1 when it
finds something or when the goal is missed. Times are wall-clock (`time.perf_counter`).

    .venv/bin/python benchmarks/lookahead.py [--candles 100000] [--runs 3]
        [--fast 150] [--slow 600] [--average sma] [--seed 11]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar, cast

# Run as a script: the repository root is not on the path otherwise.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.backtest import generate
from models.strategy_params import TrendFollowingParams
from services.backtests.lookahead import check_lookahead
from services.backtests.signals import Ohlcv, signals_for

GOAL_SECONDS = 10.0
T = TypeVar("T")


def timed(action: Callable[[], T]) -> tuple[float, T]:
    began = time.perf_counter()
    value = action()
    return time.perf_counter() - began, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fast", type=int, default=150)
    parser.add_argument("--slow", type=int, default=600)
    parser.add_argument("--average", choices=("sma", "ema"), default="sma")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    average = cast(Literal["sma", "ema"], args.average)
    params = TrendFollowingParams(fast_window=args.fast, slow_window=args.slow, average=average)
    compute = partial(signals_for, params=params)

    ohlcv: Ohlcv = generate(args.candles, args.seed).ohlcv()
    compute(ohlcv.head(10_000))  # warm numpy's code paths before timing
    # A short measurement, so more of them: the baseline multiplies it by the cut points.
    full_times = [timed(lambda: compute(ohlcv))[0] for _ in range(10 * args.runs)]
    whole = compute(ohlcv)
    changes = whole.changes()
    print(
        f"{args.candles:,} one-minute candles (seed {args.seed}); {average.upper()} "
        f"{args.fast}/{args.slow} crossover: {len(changes):,} position changes "
        f"({len(changes) // 2:,} round trips)"
    )

    checks = [
        timed(lambda: check_lookahead(compute, ohlcv, max_cut_points=None))
        for _ in range(args.runs)
    ]
    report = checks[-1][1]
    check_times = [seconds for seconds, _ in checks]
    recompute_time, _ = timed(lambda: [compute(ohlcv.head(int(i) + 1)) for i in changes])
    one = statistics.median(full_times)
    cuts = len(report.cut_points)

    print(f"\n{'':<44} {'median s':>9} {'worst s':>9}")
    print(
        f"{'look-ahead check, ' + format(cuts, ',') + ' cut points':<44} "
        f"{statistics.median(check_times):>9.3f} {max(check_times):>9.3f}"
    )
    print(f"{'  the truncated recomputations alone':<44} {recompute_time:>9.3f}")
    print(f"{'one full signal computation':<44} {one:>9.3f} {max(full_times):>9.3f}")
    print(f"{'baseline: full computation x cut points':<44} {one * cuts:>9.3f}")
    print(f"\nfindings: {len(report.findings)} (expected none)")
    worst = max(check_times)
    verdict = "met" if worst < GOAL_SECONDS else "NOT met"
    print(f"goal < {GOAL_SECONDS:.0f} s (worst of {args.runs}): {verdict}")
    if report.findings or worst >= GOAL_SECONDS:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
