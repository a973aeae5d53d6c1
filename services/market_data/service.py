"""Market data: the simulated exchange ticking, its tickers, candles and books kept.

On start the active `trading_pairs` of the simulated exchange become the market (their
rules from the table, their price process from connectors/universe.py), each pair
continuing from its last stored ticker price so a restart does not snap prices back.
Then, when `MARKET_DATA_STREAM` is on, a supervised loop steps the market on the
wall-clock cadence; `advance()` runs the very same per-step pipeline on demand:

1. cache each ticker (CacheService: Redis when configured),
2. queue the tickers, the closed candles and (at most one per symbol every
   `MARKET_DATA_SNAPSHOT_SECONDS`) a book snapshot,
3. every `MARKET_DATA_FLUSH_SECONDS` of market time write the queue in one transaction
   (tickers and candles upserted, so rewriting is harmless; a failed write is logged
   and retried with the next flush),
4. publish a `market_data` event on `market:{symbol}` for the subscribed symbols,
5. await the tick listeners in order (a failing one is logged; the rest still run).

Rates are measured on the market clock (the ticks' timestamps), which keeps pace with
the wall clock while streaming and makes `advance()` deterministic in tests.

Historical candles merge three sources, the freshest winning on the same open time:
the market's live candles (since this start, the open one included), then the stored
candles, then the deterministic backfill, which only fills before the earliest stored
candle of the series (so a fresh install has charts, and stored history is never
overwritten by invented history).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import structlog
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable

from connectors.base import AssetClass, BookLevel, Candle, OrderBook, PairRules, Tick, Ticker
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
from database.orm import OHLCVCandle, OrderBookSnapshot, PriceTicker, TradingPair, WatchlistItem
from database.seeds.catalog import SIMULATED_EXCHANGE
from models.base import decimal_to_str
from models.enums import Timeframe
from models.events import EventType, market_channel
from services.infra.cache import CacheService
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus
from utils.candles import align, timeframe_delta

log = structlog.get_logger(__name__)

TickListener = Callable[[Mapping[str, Tick]], Awaitable[None]]

MAX_CANDLES = 1000
MAX_BOOK_DEPTH = 100
SNAPSHOT_DEPTH = 20
# A cached ticker outlives a few missed ticks, not a stopped market.
TICKER_TTL_SECONDS = 60.0
# Snapshots queued while the database is unreachable (oldest dropped beyond this).
_MAX_PENDING_SNAPSHOTS = 1000
_TIMEFRAMES = tuple(t.value for t in Timeframe)
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


def ticker_key(symbol: str) -> str:
    """The cache key of a symbol's latest ticker (JSON of `ticker_data`)."""
    return f"market:ticker:{SIMULATED_EXCHANGE}:{symbol}"


def ticker_data(ticker: Ticker) -> dict[str, Any]:
    """A ticker as the cache and the `market_data` events carry it."""
    return {
        "symbol": ticker.symbol,
        "bid": ticker.bid,
        "ask": ticker.ask,
        "last": ticker.last,
        "spread": ticker.spread,
        "volume_24h": ticker.volume_24h,
        "change_24h": ticker.change_24h,
        "change_percent_24h": ticker.change_percent_24h,
        "timestamp": ticker.timestamp,
    }


def _normalize(raw: str) -> str:
    return raw.strip().upper().replace("-", "/")


def _as_utc(moment: datetime | None) -> datetime | None:
    # A query string without an offset means UTC.
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _levels(levels: Sequence[BookLevel]) -> list[list[str]]:
    return [[decimal_to_str(level.price), decimal_to_str(level.quantity)] for level in levels]


def _upsert(
    session: AsyncSession, model: type[Any], keys: tuple[str, ...], rows: list[dict[str, Any]]
) -> Awaitable[Any]:
    """INSERT ... ON CONFLICT (keys) DO UPDATE every column but the id and created_at."""
    table = model.__table__
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(table)
    kept = {"id", "created_at", *keys}
    update = {name: statement.excluded[name] for name in rows[0] if name not in kept}
    upsert: Executable = statement.on_conflict_do_update(index_elements=list(keys), set_=update)
    return session.execute(upsert, rows)


def _spec_for(row: TradingPair, spec: SymbolSpec, last_price: Decimal | None) -> SymbolSpec:
    """The universe's price process under the table's rules, from the last stored price."""
    rules = PairRules(
        symbol=row.symbol,
        base_asset=row.base_asset,
        quote_asset=row.quote_asset,
        tick_size=row.tick_size,
        step_size=row.step_size,
        min_quantity=row.min_quantity,
        max_quantity=row.max_quantity or spec.rules.max_quantity,
        min_notional=row.min_notional,
        asset_class=AssetClass(row.asset_class),
        maker_fee_bps=row.maker_fee_bps,
        taker_fee_bps=row.taker_fee_bps,
    )
    start = spec.start_price if last_price is None else last_price
    start = (start / rules.tick_size).to_integral_value(ROUND_HALF_EVEN) * rules.tick_size
    if start <= 0:
        start = spec.start_price
    return replace(spec, rules=rules, start_price=start)


def _candle_of(row: OHLCVCandle) -> Candle:
    return Candle(
        symbol=row.symbol,
        timeframe=row.timeframe,
        open_time=row.open_time,
        open=row.open,
        high=row.high,
        low=row.low,
        close=row.close,
        volume=row.volume,
        trades=row.trade_count or 0,
    )


def _select(candles: Sequence[Candle], *, from_start: bool, limit: int) -> list[Candle]:
    ordered = sorted(candles, key=lambda c: c.open_time)
    return ordered[:limit] if from_start else ordered[-limit:]


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
        exchange = SimulatedExchange(
            seed=self._settings.simulation_seed,
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
        start, end = _as_utc(start), _as_utc(end)
        self._check_candle_query(timeframe, start, end, limit)
        exchange = self._require_exchange()
        live_start = align(exchange.start, timeframe)
        earliest, stored = await self._stored_candles(resolved, timeframe, start, end, limit)
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
        return _select(list(merged.values()), from_start=start is not None, limit=limit)

    async def watchlist(self, user_id: uuid.UUID) -> list[WatchlistEntry]:
        """The user's watched symbols, oldest first, each with its live ticker."""
        async with self._database.database.read() as session:
            items = await session.scalars(
                select(WatchlistItem)
                .where(WatchlistItem.user_id == user_id)
                .order_by(WatchlistItem.sort_order, WatchlistItem.created_at, WatchlistItem.symbol)
            )
            rows = list(items)
        return [self._entry(row.symbol, row.created_at) for row in rows]

    async def add_to_watchlist(self, user_id: uuid.UUID, *, symbol: str) -> WatchlistEntry:
        """Adds a traded symbol; one already on the watchlist is a ConflictError."""
        resolved = self.resolve_symbol(symbol)
        item = WatchlistItem(user_id=user_id, symbol=resolved)
        try:
            async with self._database.database.transaction() as session:
                session.add(item)
                await session.flush()
        except IntegrityError as e:
            raise ConflictError(
                f"{resolved} is already on the watchlist", details={"symbol": resolved}
            ) from e
        return self._entry(item.symbol, item.created_at)

    async def remove_from_watchlist(self, user_id: uuid.UUID, *, symbol: str) -> None:
        """Removes the symbol (traded or not any more); NotFoundError when it is not there."""
        normalized = _normalize(symbol)
        async with self._database.database.transaction() as session:
            result = await session.execute(
                delete(WatchlistItem).where(
                    WatchlistItem.user_id == user_id, WatchlistItem.symbol == normalized
                )
            )
        if not getattr(result, "rowcount", 0):
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
            pairs = await session.scalars(
                select(TradingPair).where(
                    TradingPair.exchange == SIMULATED_EXCHANGE, TradingPair.is_active.is_(True)
                )
            )
            prices = await session.execute(
                select(PriceTicker.symbol, PriceTicker.price).where(
                    PriceTicker.exchange == SIMULATED_EXCHANGE
                )
            )
            last_prices: dict[str, Decimal] = {row.symbol: row.price for row in prices}
            universe: dict[str, SymbolSpec] = {}
            for pair in pairs:
                spec = DEFAULT_UNIVERSE.get(pair.symbol)
                if spec is None:
                    log.warning("pair_not_simulated", symbol=pair.symbol)
                    continue
                universe[pair.symbol] = _spec_for(pair, spec, last_prices.get(pair.symbol))
        return universe

    async def _run(self) -> None:
        exchange = self._require_exchange()

        async def on_ticks(ticks: Mapping[str, Tick]) -> None:
            async with self._lock:
                await self._process(exchange, ticks)

        await exchange.run(on_ticks)

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
        for candle in exchange.drain_closed_candles():
            self._pending_candles[(candle.symbol, candle.timeframe, candle.open_time)] = candle
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
                if tickers:
                    await _upsert(
                        session, PriceTicker, ("exchange", "symbol"), _ticker_rows(tickers)
                    )
                if candles:
                    await _upsert(
                        session,
                        OHLCVCandle,
                        ("symbol", "exchange", "timeframe", "open_time"),
                        _candle_rows(candles.values()),
                    )
                session.add_all(_snapshot_rows(snapshots))
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

    def _check_candle_query(
        self, timeframe: str, start: datetime | None, end: datetime | None, limit: int
    ) -> None:
        if timeframe not in _TIMEFRAMES:
            raise ValidationFailedError(
                f"unknown timeframe {timeframe!r}; expected one of {', '.join(_TIMEFRAMES)}",
                details={"timeframe": timeframe},
            )
        if not 1 <= limit <= MAX_CANDLES:
            raise ValidationFailedError(
                f"limit must be between 1 and {MAX_CANDLES}", details={"limit": limit}
            )
        if start is not None and end is not None and start >= end:
            raise ValidationFailedError(
                "start must be before end",
                details={"start": start.isoformat(), "end": end.isoformat()},
            )

    async def _stored_candles(
        self,
        symbol: str,
        timeframe: str,
        start: datetime | None,
        end: datetime | None,
        limit: int,
    ) -> tuple[datetime | None, list[Candle]]:
        """The earliest stored open time of the series, and the stored candles selected."""
        series = (
            OHLCVCandle.symbol == symbol,
            OHLCVCandle.exchange == SIMULATED_EXCHANGE,
            OHLCVCandle.timeframe == timeframe,
        )
        query = select(OHLCVCandle).where(*series)
        if start is not None:
            query = query.where(OHLCVCandle.open_time >= align(start, timeframe))
        if end is not None:
            query = query.where(OHLCVCandle.open_time <= end)
        order = OHLCVCandle.open_time.asc() if start is not None else OHLCVCandle.open_time.desc()
        async with self._database.database.read() as session:
            earliest = await session.scalar(select(func.min(OHLCVCandle.open_time)).where(*series))
            rows = list(await session.scalars(query.order_by(order).limit(limit)))
        return earliest, [_candle_of(row) for row in rows]


def _ticker_rows(tickers: Mapping[str, Ticker]) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "exchange": SIMULATED_EXCHANGE,
            "symbol": t.symbol,
            "price": t.last,
            "bid": t.bid,
            "ask": t.ask,
            "volume_24h": t.volume_24h,
            "open_24h": t.last - t.change_24h,
            "change_24h": t.change_24h,
            "change_percent_24h": t.change_percent_24h,
            "raw_data": {},
            "observed_at": t.timestamp,
            "created_at": now,
            "updated_at": now,
        }
        for t in tickers.values()
    ]


def _candle_rows(candles: Iterable[Candle]) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "exchange": SIMULATED_EXCHANGE,
            "symbol": c.symbol,
            "timeframe": c.timeframe,
            "open_time": c.open_time,
            "close_time": c.open_time + timeframe_delta(c.timeframe),
            "open": c.open,
            "high": c.high,
            "low": c.low,
            "close": c.close,
            "volume": c.volume,
            "trade_count": c.trades,
            "created_at": now,
        }
        for c in candles
    ]


def _snapshot_rows(snapshots: Sequence[tuple[OrderBook, int]]) -> list[OrderBookSnapshot]:
    rows = []
    for book, sequence in snapshots:
        bids, asks = book.bids[:SNAPSHOT_DEPTH], book.asks[:SNAPSHOT_DEPTH]
        best_bid, best_ask = book.best_bid, book.best_ask
        spread = mid = None
        if best_bid is not None and best_ask is not None:
            spread, mid = best_ask - best_bid, (best_ask + best_bid) / 2
        rows.append(
            OrderBookSnapshot(
                exchange=SIMULATED_EXCHANGE,
                symbol=book.symbol,
                bids=_levels(bids),
                asks=_levels(asks),
                best_bid=best_bid,
                best_ask=best_ask,
                spread=spread,
                mid=mid,
                sequence=sequence,
                taken_at=book.timestamp,
            )
        )
    return rows
