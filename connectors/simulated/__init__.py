"""The simulated exchange: seeded price paths with a bid/ask, a finite book and candles.

Per symbol, each `step()` draws a log-return (geometric Brownian motion at the symbol's
annual volatility plus rare normal jumps), moves the mid, lets the spread wander
(mean-reverting in log-bps inside the configured band, widening on a jump), prints a
Poisson number of trades at the bid or the ask, and rebuilds a book of finite depth.
`from_candles()` replays stored candles instead of drawing returns.

Where floats stop. The random process draws floats (returns, spread, trade sizes, book
size factors); each leaves the process as a whole number of ticks or steps, rounded there,
and becomes `Decimal` exactly as `Decimal(n) * tick_size` / `Decimal(n) * step_size`.
So every price is on the tick and every quantity on the step, and no float reaches a
`Ticker`, `OrderBook`, `Candle` or `Tick`.

Determinism. Each symbol has its own generator, seeded from the string
`cival-sim/{seed}/{symbol}/...` (CPython hashes str seeds with SHA-512: stable across runs
and PYTHONHASHSEED). So the ticks and books depend only on the seed, the symbol's spec,
the tick interval, the start time and the number of steps: not on the wall clock, not on
which other symbols are listed, and not on reads (fetch_* consume no randomness). Time
moves only through `step()` / `advance()`; `stream()` / `run()` merely call `step()` on a
wall-clock cadence. Bit-identical floats are assumed (same platform libm).

History. Candles come from the ticks generated so far. Before the start there is a
deterministic backfill so a fresh install has charts: per timeframe, `history` candles
walked backwards from the start price (same seed, its own generator per timeframe; the
timeframes' backfills are generated independently, so a backfilled 1h candle is not the
roll-up of backfilled 1m ones). The 24h ticker stats are seeded from the 1m backfill.
Once the kept live candles of a timeframe no longer reach back to the start, its
backfill is dropped so a chart never shows a gap.

Layout. sampling.py holds the seeded generators and the rounding onto the grid, market.py
one symbol's price, spread and book process, window.py its rolling 24h ticker stats,
backfill.py the history before the start, replay.py the replay of stored candles, and
exchange.py the `SimulatedExchange` that steps them all on one clock. Import from here.
"""

from connectors.simulated.exchange import (
    DEFAULT_HISTORY,
    DEFAULT_START,
    OnTicks,
    SimulatedExchange,
)
from connectors.simulated.replay import ReplayFinishedError
from connectors.simulated.sampling import SECONDS_PER_DAY, SECONDS_PER_YEAR

__all__ = [
    "DEFAULT_HISTORY",
    "DEFAULT_START",
    "SECONDS_PER_DAY",
    "SECONDS_PER_YEAR",
    "OnTicks",
    "ReplayFinishedError",
    "SimulatedExchange",
]
