"""The simulated exchange: the markets of a universe stepped on one clock, their ticks,
books and candles served as a `MarketDataConnector` (see the package doc)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import ClassVar

import structlog

from connectors.base import (
    Candle,
    Capability,
    MarketDataConnector,
    OrderBook,
    PairRules,
    Tick,
    Ticker,
    UnknownSymbolError,
)
from connectors.simulated.backfill import backfill
from connectors.simulated.market import Market
from connectors.simulated.replay import Replay, ReplayFinishedError, check_replay_series
from connectors.simulated.sampling import seeded_rng, to_ticks
from connectors.universe import DEFAULT_UNIVERSE, SymbolSpec
from utils.candles import (
    DEFAULT_TIMEFRAMES,
    CandleAggregator,
    aggregate,
    align,
    timeframe_delta,
    to_utc,
)

# Named after the package, where the exchange is imported from.
log = structlog.get_logger("connectors.simulated")

DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)
DEFAULT_HISTORY = 1440
_ZERO = Decimal(0)
_PERCENT_QUANTUM = Decimal("0.001")
_MAX_UNDRAINED = 100_000

OnTicks = Callable[[Mapping[str, Tick]], Awaitable[None]]


class SimulatedExchange(MarketDataConnector):
    """A seeded, reproducible market for every symbol of a universe (see the package doc)."""

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
            mids={s: to_ticks(spec.start_price, spec.rules.tick_size) for s, spec in specs.items()},
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

        Each candle becomes four ticks (see `Replay`, replay.py); a step ticks only the symbols that
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
            check_replay_series(spec.symbol, candles)
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
            mids={s: to_ticks(c[0].open, specs[s].rules.tick_size) for s, c in series.items()},
            max_candles=None,
        )
        exchange._replay = Replay(
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
            symbol: Market(spec, seeded_rng(seed, symbol, "live"), seconds, mids[symbol])
            for symbol, spec in specs.items()
        }
        self._candles = CandleAggregator(DEFAULT_TIMEFRAMES, max_closed=max_candles)
        # Candles closed since the last `drain_closed_candles()`; bounded for a consumer
        # that never drains (oldest dropped).
        self._closed: deque[Candle] = deque(maxlen=_MAX_UNDRAINED)
        self._ticks: dict[str, Tick] = {}
        self._backfills: dict[tuple[str, str], list[Candle]] = {}
        self._history = 0
        self._replay: Replay | None = None

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
            candles = backfill(
                self._markets[symbol].spec,
                seed=self.seed,
                timeframe=timeframe,
                before=align(self._start, timeframe),
                count=self._history,
            )
            self._backfills[key] = candles
        return candles

    def _market(self, symbol: str) -> Market:
        market = self._markets.get(symbol) or self._markets.get(symbol.upper())
        if market is None:
            raise UnknownSymbolError(f"unknown symbol {symbol!r} on {self.name}")
        return market

    def _replay_step(self, replay: Replay) -> dict[str, Tick]:
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
        market: Market,
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
