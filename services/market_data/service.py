"""Market data: the simulated exchange ticking, its tickers, candles and books kept.

On start the active `trading_pairs` of the simulated exchange become the market (their
rules from the table, their price process from connectors/universe.py), each pair
continuing from its last stored ticker price so a restart does not snap prices back.
Then, when `MARKET_DATA_STREAM` is on, a supervised loop steps the market on the
wall-clock cadence; `advance()` runs the very same per-step pipeline on demand:

1. cache each ticker (CacheService: Redis when configured),
2. queue the tickers, the closed candles and (at most one per symbol every
   `MARKET_DATA_SNAPSHOT_SECONDS`) a book snapshot, and hand the closed candles to the
   candle listeners (which must not block: the live signals queue them),
3. every `MARKET_DATA_FLUSH_SECONDS` of market time write the queue in one transaction
   (tickers and candles upserted, so rewriting is harmless; a failed write is logged
   and retried with the next flush),
4. publish a `market_data` event on `market:{symbol}` for the subscribed symbols,
5. await the tick listeners in order (a failing one is logged; the rest still run).

While streaming, a step comes every `SIMULATION_TICK_SECONDS / SIMULATION_SPEED` wall
seconds: at speed 1 the market clock keeps pace with the real one.

Rates are measured on the market clock (the ticks' timestamps), which keeps pace with
the wall clock while streaming and makes `advance()` deterministic in tests.

Historical candles merge three sources, the freshest winning on the same open time:
the market's live candles (since this start, the open one included), then the stored
candles, then the deterministic backfill, which only fills before the earliest stored
candle of the series (so a fresh install has charts, and stored history is never
overwritten by invented history).

The parts: feed.py builds what a flush writes (and each pair's price process),
history.py checks and reads the stored candles; the queries are in
database/repositories/market_data.py and watchlist.py.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from connectors.base import Candle, OrderBook, PairRules, Tick, Ticker
from connectors.simulated import SimulatedExchange
from connectors.universe import DEFAULT_UNIVERSE, SymbolSpec
from core.config import MarketDataSource, Settings
from core.exceptions import (
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    ValidationFailedError,
)
from core.service_registry import ServiceHealth
from core.supervision import SupervisedTask
from database.repositories import market_data as market_repo
from database.repositories import watchlist as watchlist_repo
from database.seeds.catalog import SIMULATED_EXCHANGE
from models.events import EventType, market_channel
from services.infra.cache import CacheService
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus
from services.market_data.feed import (
    SNAPSHOT_DEPTH,
    spec_for,
    ticker_data,
    ticker_key,
    write_pending,
)
from services.market_data.history import (
    MAX_CANDLES,
    as_utc,
    check_candle_query,
    select_candles,
    stored_candles,
)
from utils.candles import align

log = structlog.get_logger(__name__)

TickListener = Callable[[Mapping[str, Tick]], Awaitable[None]]
CandleListener = Callable[[Sequence[Candle]], None]

__all__ = [
    "MAX_BOOK_DEPTH",
    "MAX_CANDLES",
    "SNAPSHOT_DEPTH",
    "TICKER_TTL_SECONDS",
    "CandleListener",
    "LiveData",
    "MarketDataService",
    "TickListener",
    "WatchlistEntry",
    "ticker_data",
    "ticker_key",
]

MAX_BOOK_DEPTH = 100
# A cached ticker outlives a few missed ticks, not a stopped market.
TICKER_TTL_SECONDS = 60.0
# Snapshots queued while the database is unreachable (oldest dropped beyond this).
_MAX_PENDING_SNAPSHOTS = 1000
_EPSILON = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class LiveData:
    ticker: Ticker
    book: OrderBook | None


@dataclass(frozen=True, slots=True)
class WatchlistEntry:
    symbol: str
    added_at: datetime
    # None when the pair is no longer traded.
    ticker: Ticker | None


def _normalize(raw: str) -> str:
    return raw.strip().upper().replace("-", "/")


class MarketDataService:
    def __init__(
        self,
        database: DatabaseService,
        event_bus: EventBus,
        cache: CacheService,
        settings: Settings,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """`clock` gives the market's start time (default: now, in UTC)."""
        self._database = database
        self._clock = clock or (lambda: datetime.now(UTC))
        self._event_bus = event_bus
        self._cache = cache
        self._settings = settings.market_data
        self._exchange: SimulatedExchange | None = None
        self._rules: dict[str, PairRules] = {}
        self._listeners: dict[int, TickListener] = {}
        self._candle_listeners: dict[int, CandleListener] = {}
        self._listener_ids = itertools.count()
        self._subscribed: set[str] = set()
        self._lock = asyncio.Lock()
        self._loop = SupervisedTask("market_data_ticks", self._run)
        self._flush_every = timedelta(seconds=self._settings.market_data_flush_seconds)
        self._snapshot_every = timedelta(seconds=self._settings.market_data_snapshot_seconds)
        self._pending_tickers: dict[str, Ticker] = {}
        self._pending_candles: dict[tuple[str, str, datetime], Candle] = {}
        self._pending_snapshots: list[tuple[OrderBook, int]] = []
        self._last_snapshot: dict[str, datetime] = {}
        self._last_flush: datetime | None = None
        self.listener_errors = 0
        self.flush_errors = 0
        self.flushes = 0

    @property
    def exchange_name(self) -> str:
        return SIMULATED_EXCHANGE

    async def start(self) -> None:
        """Load the active pairs and start the market (and its loop when streaming)."""
        if self._settings.market_data_source is not MarketDataSource.SIMULATED:
            log.warning(
                "market_data_source_not_available",
                source=self._settings.market_data_source.value,
                using=SIMULATED_EXCHANGE,
            )
        universe = await self._load_universe()
        self._rules = {symbol: spec.rules for symbol, spec in universe.items()}
        if not universe:
            log.warning("market_data_without_pairs", exchange=SIMULATED_EXCHANGE)
            return
        seed = self._settings.simulation_seed
        if seed is None:
            # A fresh market per run: restarts must not replay the moves an agent was
            # already judged on. Logged and in /health, so a run can be reproduced.
            seed = secrets.randbits(32)
        log.info("simulated_market_seed", seed=seed, configured=self._settings.simulation_seed)
        exchange = SimulatedExchange(
            seed=seed,
            universe=universe,
            tick_seconds=self._settings.simulation_tick_seconds,
            start=self._clock(),
        )
        await exchange.connect()
        self._exchange = exchange
        self._last_flush = exchange.start
        if self._settings.market_data_stream:
            self._loop.start()

    async def stop(self) -> None:
        """Stop the loop, then write what is still queued."""
        await self._loop.stop()
        async with self._lock:
            await self._flush()
        if self._exchange is not None:
            await self._exchange.close()

    async def health(self) -> ServiceHealth:
        data: dict[str, Any] = {
            "symbols": len(self._rules),
            "subscribed": len(self._subscribed),
            "listeners": len(self._listeners),
            "listener_errors": self.listener_errors,
            "flushes": self.flushes,
            "flush_errors": self.flush_errors,
            "loop_crashes": self._loop.crashes,
        }
        exchange = self._exchange
        if exchange is None:
            return ServiceHealth.degraded("no active trading pairs to simulate", **data)
        data.update(steps=exchange.steps, market_time=exchange.now.isoformat())
        if self._settings.market_data_stream and not self._loop.running:
            return ServiceHealth.degraded(f"tick loop stopped: {self._loop.last_error}", **data)
        return ServiceHealth.healthy(f"{SIMULATED_EXCHANGE}, seed {exchange.seed}", **data)

    # --- the contract other services use ---------------------------------------------

    def resolve_symbol(self, raw: str) -> str:
        """'BTC-USD', 'btc-usd' and 'BTC/USD' are all 'BTC/USD'; unknown -> NotFoundError."""
        symbol = _normalize(raw)
        if symbol not in self._rules:
            raise NotFoundError(f"unknown symbol {raw!r}", details={"symbol": raw})
        return symbol

    def pair_rules(self, symbol: str) -> PairRules:
        return self._rules[self.resolve_symbol(symbol)]

    def ticker(self, symbol: str) -> Ticker:
        return self._require_exchange().last_tick(self.resolve_symbol(symbol)).ticker

    def order_book(self, symbol: str, depth: int = 20) -> OrderBook:
        """The latest book, `depth` (1..MAX_BOOK_DEPTH) levels a side at most."""
        if not 1 <= depth <= MAX_BOOK_DEPTH:
            raise ValidationFailedError(
                f"depth must be between 1 and {MAX_BOOK_DEPTH}", details={"depth": depth}
            )
        book = self._require_exchange().last_tick(self.resolve_symbol(symbol)).book
        return OrderBook(book.symbol, book.bids[:depth], book.asks[:depth], book.timestamp)

    def mark_price(self, symbol: str) -> Decimal | None:
        """The latest last price; None for a symbol the market does not know."""
        if self._exchange is None or _normalize(symbol) not in self._rules:
            return None
        return self._exchange.last_tick(_normalize(symbol)).ticker.last

    def add_candle_listener(self, listener: CandleListener) -> Callable[[], None]:
        """Call `listener(candles)` with the candles each step closed (every timeframe, in
        the order they closed), before the tick listeners run; returns the unsubscribe. It
        must not block: the market waits for it."""
        listener_id = next(self._listener_ids)
        self._candle_listeners[listener_id] = listener

        def remove() -> None:
            self._candle_listeners.pop(listener_id, None)

        return remove

    def add_tick_listener(self, listener: TickListener) -> Callable[[], None]:
        """Await `listener(ticks)` after each step is recorded; returns the unsubscribe."""
        listener_id = next(self._listener_ids)
        self._listeners[listener_id] = listener

        def remove() -> None:
            self._listeners.pop(listener_id, None)

        return remove

    async def advance(self, steps: int = 1) -> dict[str, Tick]:
        """Step the market now through the whole pipeline; returns each symbol's last Tick."""
        if steps < 1:
            raise ValueError("steps must be >= 1")
        exchange = self._require_exchange()
        latest: dict[str, Tick] = {}
        async with self._lock:
            for _ in range(steps):
                ticks = exchange.step()
                await self._process(exchange, ticks)
                latest.update(ticks)
        return latest

    # --- what the endpoints use --------------------------------------------------------

    def pairs(self) -> list[PairRules]:
        """The traded pairs and their rules, by symbol."""
        return [self._rules[symbol] for symbol in sorted(self._rules)]

    def live_data(self, symbol: str, *, depth: int | None = None) -> LiveData:
        """The latest ticker, with the top `depth` book levels when asked."""
        ticker = self.ticker(symbol)
        return LiveData(ticker, None if depth is None else self.order_book(symbol, depth))

    def subscribe(self, symbol: str) -> str:
        """From now on the symbol's ticks are published; returns their channel."""
        resolved = self.resolve_symbol(symbol)
        self._subscribed.add(resolved)
        return market_channel(resolved)

    async def candles(
        self,
        symbol: str,
        *,
        timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 500,
    ) -> list[Candle]:
        """Candles overlapping [start, end], oldest first: the first `limit` from `start`
        when given, otherwise the latest `limit` (merge rule in the module doc)."""
        resolved = self.resolve_symbol(symbol)
        start, end = as_utc(start), as_utc(end)
        check_candle_query(timeframe, start, end, limit)
        exchange = self._require_exchange()
        live_start = align(exchange.start, timeframe)
        async with self._database.database.read() as session:
            earliest, stored = await stored_candles(session, resolved, timeframe, start, end, limit)
        # Backfill stops before the first stored and the first live candle (end inclusive).
        bounds = [t - _EPSILON for t in (earliest, live_start) if t is not None]
        backfill_end = min([*bounds, end] if end is not None else bounds)
        backfill: list[Candle] = []
        if start is None or align(start, timeframe) <= backfill_end:
            backfill = await exchange.fetch_candles(
                resolved, timeframe=timeframe, start=start, end=backfill_end, limit=limit
            )
        live: list[Candle] = []
        if end is None or end >= live_start:
            live = await exchange.fetch_candles(
                resolved,
                timeframe=timeframe,
                start=None if start is None else max(start, live_start),
                end=end,
                limit=limit,
            )
        merged = {c.open_time: c for c in backfill if c.open_time < live_start}
        merged.update((c.open_time, c) for c in stored)
        merged.update((c.open_time, c) for c in live if c.open_time >= live_start)
        return select_candles(list(merged.values()), from_start=start is not None, limit=limit)

    async def watchlist(self, user_id: uuid.UUID) -> list[WatchlistEntry]:
        """The user's watched symbols, oldest first, each with its live ticker."""
        async with self._database.database.read() as session:
            rows = await watchlist_repo.list_items(session, user_id=user_id)
        return [self._entry(row.symbol, row.created_at) for row in rows]

    async def add_to_watchlist(self, user_id: uuid.UUID, *, symbol: str) -> WatchlistEntry:
        """Adds a traded symbol; one already on the watchlist is a ConflictError."""
        resolved = self.resolve_symbol(symbol)
        try:
            async with self._database.database.transaction() as session:
                item = await watchlist_repo.add_item(session, user_id=user_id, symbol=resolved)
        except IntegrityError as e:
            raise ConflictError(
                f"{resolved} is already on the watchlist", details={"symbol": resolved}
            ) from e
        return self._entry(item.symbol, item.created_at)

    async def remove_from_watchlist(self, user_id: uuid.UUID, *, symbol: str) -> None:
        """Removes the symbol (traded or not any more); NotFoundError when it is not there."""
        normalized = _normalize(symbol)
        async with self._database.database.transaction() as session:
            removed = await watchlist_repo.remove_item(session, user_id=user_id, symbol=normalized)
        if not removed:
            raise NotFoundError(
                f"{normalized} is not on the watchlist", details={"symbol": normalized}
            )

    # --- internals ---------------------------------------------------------------------

    def _require_exchange(self) -> SimulatedExchange:
        if self._exchange is None:
            raise ServiceUnavailableError("market data is not running (no active pairs)")
        return self._exchange

    def _entry(self, symbol: str, added_at: datetime) -> WatchlistEntry:
        ticker = self.ticker(symbol) if symbol in self._rules else None
        return WatchlistEntry(symbol=symbol, added_at=added_at, ticker=ticker)

    async def _load_universe(self) -> dict[str, SymbolSpec]:
        async with self._database.database.read() as session:
            pairs = await market_repo.active_pairs(session, exchange=SIMULATED_EXCHANGE)
            last_prices = await market_repo.last_prices(session, exchange=SIMULATED_EXCHANGE)
            universe: dict[str, SymbolSpec] = {}
            for pair in pairs:
                spec = DEFAULT_UNIVERSE.get(pair.symbol)
                if spec is None:
                    log.warning("pair_not_simulated", symbol=pair.symbol)
                    continue
                universe[pair.symbol] = spec_for(pair, spec, last_prices.get(pair.symbol))
        return universe

    async def _run(self) -> None:
        exchange = self._require_exchange()

        async def on_ticks(ticks: Mapping[str, Tick]) -> None:
            async with self._lock:
                await self._process(exchange, ticks)

        speed = self._settings.simulation_speed
        await exchange.run(
            on_ticks, interval_seconds=self._settings.simulation_tick_seconds / speed
        )

    async def _process(self, exchange: SimulatedExchange, ticks: Mapping[str, Tick]) -> None:
        for symbol, tick in ticks.items():
            await self._cache.set_json(
                ticker_key(symbol), ticker_data(tick.ticker), ttl=TICKER_TTL_SECONDS
            )
            self._pending_tickers[symbol] = tick.ticker
            taken = self._last_snapshot.get(symbol)
            if taken is None or tick.book.timestamp - taken >= self._snapshot_every:
                self._last_snapshot[symbol] = tick.book.timestamp
                self._pending_snapshots.append((tick.book, exchange.steps))
        closed = exchange.drain_closed_candles()
        for candle in closed:
            self._pending_candles[(candle.symbol, candle.timeframe, candle.open_time)] = candle
        if closed:
            for candle_listener in list(self._candle_listeners.values()):
                try:
                    candle_listener(closed)
                except Exception:
                    self.listener_errors += 1
                    log.exception("candle_listener_failed", listener=repr(candle_listener))
        if self._last_flush is None or exchange.now - self._last_flush >= self._flush_every:
            self._last_flush = exchange.now
            await self._flush()
        for symbol, tick in ticks.items():
            # Published for symbols subscribed over REST and for any channel a WebSocket
            # client listens on: subscribing to market:{SYMBOL} alone is enough.
            channel = market_channel(symbol)
            if symbol in self._subscribed or self._event_bus.listening(channel):
                await self._event_bus.publish(
                    channel, EventType.MARKET_DATA, ticker_data(tick.ticker)
                )
        for listener in list(self._listeners.values()):
            try:
                await listener(ticks)
            except Exception:
                self.listener_errors += 1
                log.exception("tick_listener_failed", listener=repr(listener))

    async def _flush(self) -> None:
        """Write the queued tickers, candles and snapshots in one transaction."""
        tickers, self._pending_tickers = self._pending_tickers, {}
        candles, self._pending_candles = self._pending_candles, {}
        snapshots, self._pending_snapshots = self._pending_snapshots, []
        if not (tickers or candles or snapshots) or self._exchange is None:
            return
        try:
            async with self._database.database.transaction() as session:
                await write_pending(session, tickers, candles, snapshots)
        except (SQLAlchemyError, OSError):
            self.flush_errors += 1
            log.exception("market_data_flush_failed", tickers=len(tickers), candles=len(candles))
            # Keep them for the next flush; anything queued meanwhile is newer and wins.
            self._pending_tickers = {**tickers, **self._pending_tickers}
            self._pending_candles = {**candles, **self._pending_candles}
            self._pending_snapshots = [*snapshots, *self._pending_snapshots][
                -_MAX_PENDING_SNAPSHOTS:
            ]
            return
        self.flushes += 1
