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
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import ClassVar

import structlog

from connectors.base import (
    BookLevel,
    Candle,
    Capability,
    ExchangeError,
    MarketDataConnector,
    OrderBook,
    PairRules,
    Tick,
    Ticker,
    UnknownSymbolError,
)
from connectors.universe import DEFAULT_UNIVERSE, SymbolSpec
from utils.candles import (
    DEFAULT_TIMEFRAMES,
    CandleAggregator,
    aggregate,
    align,
    timeframe_delta,
    to_utc,
)

log = structlog.get_logger(__name__)

DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)
DEFAULT_HISTORY = 1440
SECONDS_PER_YEAR = 365 * 86_400
SECONDS_PER_DAY = 86_400

# Spread process: log-bps AR(1) with this stationary deviation and mean-reversion time.
_SPREAD_LOG_SD = 0.35
_SPREAD_REVERSION_SECONDS = 60.0
# Trade sizes: lognormal with mean 1 (mu = -sd^2 / 2) around the symbol's mean size.
_TRADE_SIZE_SD = 0.8
# Book: each side's size is scaled per step by a lognormal factor (mean ~1).
_BOOK_SIZE_SD = 0.2
_ZERO = Decimal(0)
_MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)
_PERCENT_QUANTUM = Decimal("0.001")
_MAX_UNDRAINED = 100_000

OnTicks = Callable[[Mapping[str, Tick]], Awaitable[None]]


class ReplayFinishedError(ExchangeError):
    """A replay has emitted every stored candle: there is nothing left to step."""


def _to_ticks(price: Decimal, unit: Decimal) -> int:
    return int((price / unit).to_integral_value(ROUND_HALF_EVEN))


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        # Normal approximation: exact enough for a trade count, and O(1).
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    threshold = math.exp(-lam)
    count = 0
    product = rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def _rng(seed: int, symbol: str, stream: str) -> random.Random:
    # Reproducible simulation, not secrecy: a seeded Mersenne Twister is what we want.
    return random.Random(f"cival-sim/{seed}/{symbol}/{stream}")  # noqa: S311


class _Bucket:
    __slots__ = ("open", "open_time", "volume")

    def __init__(self, open_time: datetime, open_: Decimal, volume: Decimal) -> None:
        self.open_time = open_time
        self.open = open_
        self.volume = volume


class _Rolling24h:
    """Volume and opening price over the last 24h, kept in 1-minute buckets."""

    __slots__ = ("_buckets", "_end", "volume")

    def __init__(self) -> None:
        self._buckets: deque[_Bucket] = deque()
        self._end: datetime | None = None
        self.volume = _ZERO

    @property
    def open_price(self) -> Decimal:
        return self._buckets[0].open

    def seed(self, candles: Sequence[Candle]) -> None:
        for candle in candles[-(SECONDS_PER_DAY // 60) :]:
            self._buckets.append(_Bucket(candle.open_time, candle.open, candle.volume))
            self.volume += candle.volume

    def add(self, price: Decimal, volume: Decimal, timestamp: datetime) -> None:
        if self._end is None or timestamp >= self._end:
            open_time = align(timestamp, "1m")
            self._end = open_time + _MINUTE
            self._buckets.append(_Bucket(open_time, price, volume))
            cutoff = timestamp - _DAY
            while len(self._buckets) > 1 and self._buckets[0].open_time <= cutoff:
                self.volume -= self._buckets.popleft().volume
        else:
            self._buckets[-1].volume += volume
        self.volume += volume


class _Market:
    """One symbol's simulated market, held in whole ticks (prices) and steps (quantities)."""

    __slots__ = (
        "_drift",
        "_jump_probability",
        "_jump_vol",
        "_level_steps",
        "_log_spread",
        "_log_spread_max",
        "_log_spread_mean",
        "_mean_trade_steps",
        "_min_steps",
        "_sigma",
        "_spacing_bps",
        "_spread_max",
        "_spread_min",
        "_spread_noise",
        "_spread_rho",
        "_trades_per_step",
        "ask",
        "asks",
        "bid",
        "bids",
        "last",
        "mid",
        "rng",
        "spec",
        "step",
        "symbol",
        "tick",
        "window",
    )

    def __init__(self, spec: SymbolSpec, rng: random.Random, tick_seconds: float, mid: int) -> None:
        rules = spec.rules
        self.spec = spec
        self.symbol = rules.symbol
        self.tick = rules.tick_size
        self.step = rules.step_size
        self.rng = rng
        self.mid = mid
        self.last = mid
        self.bid = mid
        self.ask = mid + 1
        self.bids: tuple[BookLevel, ...] = ()
        self.asks: tuple[BookLevel, ...] = ()
        self.window = _Rolling24h()

        years = tick_seconds / SECONDS_PER_YEAR
        vol, jump_vol = spec.annual_volatility, spec.jump_volatility
        jumps_per_year = spec.jumps_per_day * 365
        self._sigma = vol * math.sqrt(years)
        # Ito correction and jump compensator: the expected price grows at annual_drift.
        self._drift = (
            spec.annual_drift - vol * vol / 2 - jumps_per_year * math.expm1(jump_vol**2 / 2)
        ) * years
        self._jump_probability = -math.expm1(-spec.jumps_per_day * tick_seconds / SECONDS_PER_DAY)
        self._jump_vol = jump_vol

        self._trades_per_step = spec.trades_per_second * tick_seconds
        self._min_steps = max(1, math.ceil(rules.min_quantity / rules.step_size))
        self._mean_trade_steps = float(spec.daily_volume / rules.step_size) / (
            spec.trades_per_second * SECONDS_PER_DAY
        )

        self._log_spread_mean = math.log(float(spec.spread_bps))
        self._log_spread = self._log_spread_mean
        self._log_spread_max = math.log(float(spec.max_spread_bps))
        self._spread_min = float(spec.min_spread_bps)
        self._spread_max = float(spec.max_spread_bps)
        # Exact AR(1) discretisation of an Ornstein-Uhlenbeck process: any tick interval works.
        rho = math.exp(-tick_seconds / _SPREAD_REVERSION_SECONDS)
        self._spread_rho = rho
        self._spread_noise = _SPREAD_LOG_SD * math.sqrt(1 - rho * rho)

        depth = spec.depth
        touch = max(self._min_steps, int(depth.touch_notional / spec.start_price / rules.step_size))
        self._level_steps = tuple(int(touch * depth.growth**i) for i in range(depth.levels))
        self._spacing_bps = float(depth.level_spacing_bps)

    def walk(self) -> tuple[int, int]:
        """One step of the random process; returns (traded volume in steps, trade count)."""
        rng = self.rng
        shock = rng.gauss()
        log_return = self._drift + self._sigma * shock
        jumped = self._jump_probability > 0 and rng.random() < self._jump_probability
        if jumped:
            log_return += rng.gauss(0.0, self._jump_vol)
        self.mid = max(1, round(self.mid * math.exp(log_return)))
        self.quote(widen=jumped)
        trades = _poisson(rng, self._trades_per_step)
        volume = 0
        if trades:
            size = rng.lognormvariate(-(_TRADE_SIZE_SD**2) / 2, _TRADE_SIZE_SD)
            volume = max(trades * self._min_steps, round(trades * self._mean_trade_steps * size))
            # Buyers lift the ask more often when the price rose; sellers hit the bid when it fell.
            buy = rng.random() < 0.5 + 0.25 * math.tanh(shock)
            self.last = self.ask if buy else self.bid
        self.build_book()
        return volume, trades

    def replay_to(self, mid: int) -> None:
        """Set the mid to a replayed price, which is also the last trade."""
        self.mid = max(1, mid)
        self.quote(widen=False)
        self.last = self.mid
        self.build_book()

    def quote(self, *, widen: bool) -> None:
        """Advance the spread process and place bid <= mid <= ask around the mid."""
        if widen:
            self._log_spread = self._log_spread_max
        else:
            mean = self._log_spread_mean
            self._log_spread = (
                mean
                + self._spread_rho * (self._log_spread - mean)
                + self._spread_noise * self.rng.gauss()
            )
        bps = min(max(math.exp(self._log_spread), self._spread_min), self._spread_max)
        spread = max(1, math.ceil(bps * self.mid / 10_000))
        self.bid = max(1, self.mid - spread // 2)
        self.ask = self.bid + spread

    def build_book(self) -> None:
        """`depth.levels` a side from the touch outwards, thicker away from it."""
        rng = self.rng
        tick, step, min_steps = self.tick, self.step, self._min_steps
        spacing = max(1, round(self._spacing_bps * self.mid / 10_000))
        mu = -(_BOOK_SIZE_SD**2) / 2
        # One size factor per side keeps quantities monotone in the distance from the touch.
        bid_factor = rng.lognormvariate(mu, _BOOK_SIZE_SD)
        ask_factor = rng.lognormvariate(mu, _BOOK_SIZE_SD)
        bid, ask = self.bid, self.ask
        self.bids = tuple(
            BookLevel(
                Decimal(bid - i * spacing) * tick,
                Decimal(max(min_steps, int(steps * bid_factor))) * step,
            )
            for i, steps in enumerate(self._level_steps)
            if bid - i * spacing >= 1
        )
        self.asks = tuple(
            BookLevel(
                Decimal(ask + i * spacing) * tick,
                Decimal(max(min_steps, int(steps * ask_factor))) * step,
            )
            for i, steps in enumerate(self._level_steps)
        )


def _backfill(
    spec: SymbolSpec, *, seed: int, timeframe: str, before: datetime, count: int
) -> list[Candle]:
    """`count` candles ending at `before`, oldest first, walked backwards from the start price.

    The candle just before `before` closes at the start price, so live candles continue it.
    """
    rules = spec.rules
    tick, step = rules.tick_size, rules.step_size
    rng = _rng(seed, spec.symbol, f"backfill/{timeframe}")
    delta = timeframe_delta(timeframe)
    seconds = delta.total_seconds()
    years = seconds / SECONDS_PER_YEAR
    sigma = spec.annual_volatility * math.sqrt(years)
    drift = (spec.annual_drift - spec.annual_volatility**2 / 2) * years
    expected_jumps = spec.jumps_per_day * seconds / SECONDS_PER_DAY
    mean_volume = float(spec.daily_volume / step) * seconds / SECONDS_PER_DAY
    trades_per_candle = spec.trades_per_second * seconds
    close = _to_ticks(spec.start_price, tick)
    candles: list[Candle] = []
    for k in range(1, count + 1):
        log_return = drift + sigma * rng.gauss()
        jumps = _poisson(rng, expected_jumps)
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
        trades = _poisson(rng, trades_per_candle)
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


@dataclass(frozen=True, slots=True)
class _PathPoint:
    market: _Market
    mid: int
    volume: Decimal
    trades: int


class _Replay:
    """Stored candles as four ticks each: open, low, high, close for a rising candle (open,
    high, low, close for a falling one), a quarter of the candle's length apart.

    The candle's volume and trade count are split over its four ticks (three equal parts
    rounded down to the step, the rest on the close), so re-aggregating the replayed ticks
    at the candles' timeframe gives back the candles exactly.
    """

    def __init__(
        self, series: Sequence[tuple[_Market, Sequence[Candle]]], delta: timedelta
    ) -> None:
        by_time: dict[datetime, list[tuple[_Market, Candle]]] = {}
        for market, candles in series:
            for candle in candles:
                by_time.setdefault(to_utc(candle.open_time), []).append((market, candle))
        self._timeline = sorted(by_time.items(), key=lambda item: item[0])
        self._quarter = delta / 4
        self.position = 0

    @property
    def finished(self) -> bool:
        return self.position >= 4 * len(self._timeline)

    def next(self) -> tuple[datetime, list[_PathPoint]]:
        index, phase = divmod(self.position, 4)
        self.position += 1
        open_time, entries = self._timeline[index]
        points = [self._point(market, candle, phase) for market, candle in entries]
        return open_time + self._quarter * phase, points

    @staticmethod
    def _point(market: _Market, candle: Candle, phase: int) -> _PathPoint:
        rising = candle.close >= candle.open
        price = (
            candle.open,
            candle.low if rising else candle.high,
            candle.high if rising else candle.low,
            candle.close,
        )[phase]
        part = (candle.volume / 4).quantize(market.step, rounding=ROUND_DOWN)
        volume = candle.volume - 3 * part if phase == 3 else part
        trades = candle.trades // 4
        if phase == 3:
            trades = candle.trades - 3 * trades
        return _PathPoint(market, _to_ticks(price, market.tick), volume, trades)


class SimulatedExchange(MarketDataConnector):
    """A seeded, reproducible market for every symbol of a universe (see the module doc)."""

    name: ClassVar[str] = "simulated"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.TICKER,
            Capability.ORDER_BOOK,
            Capability.CANDLES,
            Capability.TRADING_RULES,
            Capability.STREAM_TICKS,
            Capability.REPLAY,
        }
    )

    def __init__(
        self,
        *,
        seed: int,
        universe: Mapping[str, SymbolSpec] | None = None,
        tick_seconds: float = 1.0,
        start: datetime | None = None,
        history: int = DEFAULT_HISTORY,
    ) -> None:
        """`tick_seconds` of simulated time pass per step, from `start` (DEFAULT_START when
        omitted, so that the timestamps too are reproducible; the service passes now).
        `history` candles per symbol and timeframe are backfilled (0: none); at least
        DEFAULT_HISTORY live candles per timeframe are kept."""
        if history < 0:
            raise ValueError("history must be >= 0")
        specs = DEFAULT_UNIVERSE if universe is None else universe
        self._setup(
            seed=seed,
            specs=specs,
            tick_seconds=tick_seconds,
            start=DEFAULT_START if start is None else start,
            mids={
                s: _to_ticks(spec.start_price, spec.rules.tick_size) for s, spec in specs.items()
            },
            # History is only the backfill: live candles are kept as the docstring says.
            max_candles=max(history, DEFAULT_HISTORY),
        )
        self._history = history
        for market in self._markets.values():
            if history:
                market.window.seed(self._backfill(market.symbol, "1m"))
            market.quote(widen=False)
            market.build_book()
            self._publish(market, self._start, _ZERO, 0)

    @classmethod
    def from_candles(
        cls,
        candles_by_symbol: Mapping[str, Sequence[Candle]],
        *,
        seed: int = 0,
        universe: Mapping[str, SymbolSpec] | None = None,
    ) -> SimulatedExchange:
        """Replay stored candles (one timeframe, oldest first, per symbol) as ticks.

        Each candle becomes four ticks (see `_Replay`); a step ticks only the symbols that
        have a candle at that time. Bid/ask and book come from the seeded spread and depth
        processes around the replayed price. No backfill; steps past the end raise
        ReplayFinishedError. Prices off the symbol's tick are rounded to it.
        """
        if not candles_by_symbol:
            raise ValueError("nothing to replay")
        source = DEFAULT_UNIVERSE if universe is None else universe
        specs: dict[str, SymbolSpec] = {}
        series: dict[str, Sequence[Candle]] = {}
        for symbol, candles in candles_by_symbol.items():
            spec = source.get(symbol) or source.get(symbol.upper())
            if spec is None:
                raise UnknownSymbolError(f"unknown symbol {symbol!r} on {cls.name}")
            _check_replay_series(spec.symbol, candles)
            specs[spec.symbol] = spec
            series[spec.symbol] = candles
        timeframes = {candle.timeframe for candles in series.values() for candle in candles}
        if len(timeframes) != 1:
            raise ValueError(f"replay needs candles of one timeframe, got {sorted(timeframes)}")
        delta = timeframe_delta(timeframes.pop())
        exchange = cls.__new__(cls)
        exchange._setup(
            seed=seed,
            specs=specs,
            tick_seconds=(delta / 4).total_seconds(),
            start=min(to_utc(candles[0].open_time) for candles in series.values()),
            mids={s: _to_ticks(c[0].open, specs[s].rules.tick_size) for s, c in series.items()},
            max_candles=None,
        )
        exchange._replay = _Replay(
            [(exchange._markets[symbol], candles) for symbol, candles in series.items()], delta
        )
        for market in exchange._markets.values():
            market.replay_to(market.mid)
            exchange._publish(market, exchange._start, _ZERO, 0, record_candle=False)
        return exchange

    def _setup(
        self,
        *,
        seed: int,
        specs: Mapping[str, SymbolSpec],
        tick_seconds: float,
        start: datetime,
        mids: Mapping[str, int],
        max_candles: int | None,
    ) -> None:
        if not specs:
            raise ValueError("the universe is empty")
        for key, spec in specs.items():
            if key != spec.symbol:
                raise ValueError(f"universe key {key!r} does not match its spec {spec.symbol!r}")
        if not (math.isfinite(tick_seconds) and tick_seconds > 0):
            raise ValueError("tick_seconds must be > 0")
        self.seed = seed
        self._delta = timedelta(seconds=tick_seconds)
        if not self._delta:
            raise ValueError("tick_seconds must be at least a microsecond")
        # The process uses exactly the interval the clock advances by.
        seconds = self._delta.total_seconds()
        self._start = to_utc(start)
        self._now = self._start
        self._steps = 0
        self._markets = {
            symbol: _Market(spec, _rng(seed, symbol, "live"), seconds, mids[symbol])
            for symbol, spec in specs.items()
        }
        self._candles = CandleAggregator(DEFAULT_TIMEFRAMES, max_closed=max_candles)
        # Candles closed since the last `drain_closed_candles()`; bounded for a consumer
        # that never drains (oldest dropped).
        self._closed: deque[Candle] = deque(maxlen=_MAX_UNDRAINED)
        self._ticks: dict[str, Tick] = {}
        self._backfills: dict[tuple[str, str], list[Candle]] = {}
        self._history = 0
        self._replay: _Replay | None = None

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._markets)

    @property
    def start(self) -> datetime:
        """When the live market began: earlier candles are backfilled (or replayed)."""
        return self._start

    @property
    def now(self) -> datetime:
        """The simulated clock: the timestamp of the latest step."""
        return self._now

    @property
    def tick_interval(self) -> timedelta:
        return self._delta

    @property
    def steps(self) -> int:
        return self._steps

    @property
    def finished(self) -> bool:
        """True when a replay has nothing left; a random market never finishes."""
        return self._replay is not None and self._replay.finished

    def spec(self, symbol: str) -> SymbolSpec:
        return self._market(symbol).spec

    def last_tick(self, symbol: str) -> Tick:
        """The symbol's latest tick (its initial state before the first step)."""
        return self._ticks[self._market(symbol).symbol]

    def drain_closed_candles(self) -> list[Candle]:
        """The live candles closed since the last call, in the order they closed."""
        closed = list(self._closed)
        self._closed.clear()
        return closed

    def step(self) -> dict[str, Tick]:
        """Advance simulated time by one tick interval; returns each ticked symbol's Tick."""
        if self._replay is not None:
            return self._replay_step(self._replay)
        self._steps += 1
        now = self._start + self._delta * self._steps
        self._now = now
        ticks: dict[str, Tick] = {}
        for symbol, market in self._markets.items():
            volume, trades = market.walk()
            traded = Decimal(volume) * market.step if volume else _ZERO
            ticks[symbol] = self._publish(market, now, traded, trades)
        return ticks

    def advance(self, steps: int) -> dict[str, Tick]:
        """Run `steps` steps (fewer if a replay ends); returns each symbol's latest Tick."""
        if steps < 1:
            raise ValueError("steps must be >= 1")
        latest: dict[str, Tick] = {}
        for i in range(steps):
            if i and self.finished:
                break
            latest.update(self.step())
        return latest

    async def stream(
        self, *, interval_seconds: float | None = None
    ) -> AsyncGenerator[dict[str, Tick], None]:
        """Step every `interval_seconds` of wall time (default: the tick interval, so the
        simulated clock keeps pace with the real one) and yield each step's ticks.

        A consumer that falls more than one interval behind resumes the cadence from now
        instead of receiving a burst of catch-up steps. Ends when a replay finishes.
        """
        interval = self._delta.total_seconds() if interval_seconds is None else interval_seconds
        if not interval >= 0:
            raise ValueError("interval_seconds must be >= 0")
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while not self.finished:
            yield self.step()
            deadline += interval
            delay = deadline - loop.time()
            if delay < -interval:
                deadline = loop.time()
            await asyncio.sleep(max(delay, 0.0))

    async def run(self, on_tick: OnTicks, *, interval_seconds: float | None = None) -> None:
        """Hand every step's ticks to `on_tick` on the `stream()` cadence; returns when a
        replay finishes, otherwise runs until cancelled."""
        async with contextlib.aclosing(self.stream(interval_seconds=interval_seconds)) as ticks:
            async for step_ticks in ticks:
                await on_tick(step_ticks)

    async def connect(self) -> None:
        log.info(
            "simulated_exchange_ready",
            seed=self.seed,
            symbols=len(self._markets),
            replay=self._replay is not None,
        )

    async def close(self) -> None:
        """Nothing to release: the simulation holds no sessions."""

    async def trading_rules(self) -> list[PairRules]:
        return [market.spec.rules for market in self._markets.values()]

    async def fetch_ticker(self, symbol: str) -> Ticker:
        return self.last_tick(symbol).ticker

    async def fetch_order_book(self, symbol: str, *, depth: int = 20) -> OrderBook:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        book = self.last_tick(symbol).book
        if depth >= len(book.bids) and depth >= len(book.asks):
            return book
        return OrderBook(book.symbol, book.bids[:depth], book.asks[:depth], book.timestamp)

    async def fetch_candles(
        self,
        symbol: str,
        *,
        timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 500,
    ) -> list[Candle]:
        """Candles overlapping [start, end], oldest first, including the open one: the first
        `limit` from `start` when it is given, otherwise the latest `limit`."""
        market = self._market(symbol)
        timeframe_delta(timeframe)
        if limit < 1:
            raise ValueError("limit must be >= 1")
        series = self._history_of(market.symbol, timeframe) + self._live(market.symbol, timeframe)
        low = None if start is None else align(start, timeframe)
        high = None if end is None else to_utc(end)
        selected = [
            c
            for c in series
            if (low is None or c.open_time >= low) and (high is None or c.open_time <= high)
        ]
        return selected[:limit] if start is not None else selected[-limit:]

    def _source_timeframe(self, timeframe: str) -> str:
        """The aggregated timeframe live candles of `timeframe` come from."""
        if timeframe in self._candles.timeframes:
            return timeframe
        # 15m and 4h are rolled up from the largest aggregated timeframe that divides them.
        target = timeframe_delta(timeframe)
        return max(
            (tf for tf in self._candles.timeframes if not target % timeframe_delta(tf)),
            key=timeframe_delta,
        )

    def _live(self, symbol: str, timeframe: str) -> list[Candle]:
        source = self._source_timeframe(timeframe)
        lower = self._candles.candles(symbol, source)
        if source == timeframe:
            return lower
        rolled = aggregate(lower, timeframe)
        if self._candles.dropped(symbol, source) and rolled[0].open_time < lower[0].open_time:
            # Retention cut the source mid-period: the oldest roll-up would be partial.
            rolled = rolled[1:]
        return rolled

    def _history_of(self, symbol: str, timeframe: str) -> list[Candle]:
        if not self._history or self._candles.dropped(symbol, self._source_timeframe(timeframe)):
            # Once retention has dropped live candles, history would leave a gap.
            return []
        return self._backfill(symbol, timeframe)

    def _backfill(self, symbol: str, timeframe: str) -> list[Candle]:
        key = (symbol, timeframe)
        candles = self._backfills.get(key)
        if candles is None:
            candles = _backfill(
                self._markets[symbol].spec,
                seed=self.seed,
                timeframe=timeframe,
                before=align(self._start, timeframe),
                count=self._history,
            )
            self._backfills[key] = candles
        return candles

    def _market(self, symbol: str) -> _Market:
        market = self._markets.get(symbol) or self._markets.get(symbol.upper())
        if market is None:
            raise UnknownSymbolError(f"unknown symbol {symbol!r} on {self.name}")
        return market

    def _replay_step(self, replay: _Replay) -> dict[str, Tick]:
        if replay.finished:
            raise ReplayFinishedError(f"replay finished after {self._steps} steps")
        timestamp, points = replay.next()
        self._steps += 1
        self._now = timestamp
        ticks: dict[str, Tick] = {}
        for point in points:
            point.market.replay_to(point.mid)
            ticks[point.market.symbol] = self._publish(
                point.market, timestamp, point.volume, point.trades
            )
        return ticks

    def _publish(
        self,
        market: _Market,
        timestamp: datetime,
        volume: Decimal,
        trades: int,
        *,
        record_candle: bool = True,
    ) -> Tick:
        tick = market.tick
        last = Decimal(market.last) * tick
        window = market.window
        window.add(last, volume, timestamp)
        opened = window.open_price
        change = last - opened
        ticker = Ticker(
            symbol=market.symbol,
            bid=Decimal(market.bid) * tick,
            ask=Decimal(market.ask) * tick,
            last=last,
            volume_24h=window.volume,
            change_24h=change,
            change_percent_24h=(change * 100 / opened).quantize(_PERCENT_QUANTUM),
            timestamp=timestamp,
        )
        book = OrderBook(market.symbol, market.bids, market.asks, timestamp)
        result = Tick(ticker=ticker, book=book, trade_volume=volume)
        if record_candle:
            self._closed.extend(
                self._candles.add(market.symbol, last, volume, timestamp, trades=trades)
            )
        self._ticks[market.symbol] = result
        return result


def _check_replay_series(symbol: str, candles: Sequence[Candle]) -> None:
    if not candles:
        raise ValueError(f"no candles to replay for {symbol}")
    previous: datetime | None = None
    for candle in candles:
        if candle.symbol.upper() != symbol.upper():
            raise ValueError(f"a {candle.symbol} candle in the {symbol} series")
        open_time = to_utc(candle.open_time)
        if previous is not None and open_time <= previous:
            raise ValueError(f"{symbol} candles must be strictly in time order")
        previous = open_time
