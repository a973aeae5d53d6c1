"""The market data service on both databases, stepped with `advance()` (no loop, no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from connectors.base import Tick
from core.config import Settings
from core.exceptions import NotFoundError, ValidationFailedError
from database.orm import OHLCVCandle, OrderBookSnapshot, PriceTicker
from models.events import Event
from services.container import Services, build_services
from services.market_data.service import MarketDataService, ticker_key

# A minute boundary, so candle counts are exact.
START = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
SYMBOL_COUNT = 12


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    return make_settings(
        database={"url": database_url},
        redis={"url": ""},
        market_data={
            "market_data_stream": False,
            "market_data_flush_seconds": 5,
            "market_data_snapshot_seconds": 60,
        },
    )


async def _started(settings: Settings, start: datetime = START) -> Services:
    services = build_services(settings)
    # The market starts at a fixed instant, so candle boundaries are known.
    services.market_data._clock = lambda: start
    await services.registry.start()
    return services


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    started = await _started(settings)
    yield started
    await started.registry.stop()


@pytest.fixture
def market(services: Services) -> MarketDataService:
    return services.market_data


async def _count(services: Services, query: Any) -> int:
    async with services.database.database.read() as session:
        return int(await session.scalar(query) or 0)


class TestSymbols:
    @pytest.mark.parametrize("raw", ["BTC/USD", "BTC-USD", "btc-usd", " btc/usd "])
    def test_resolves_every_url_form(self, market: MarketDataService, raw: str) -> None:
        assert market.resolve_symbol(raw) == "BTC/USD"

    def test_unknown_symbol_is_not_found_with_the_symbol(self, market: MarketDataService) -> None:
        with pytest.raises(NotFoundError) as caught:
            market.resolve_symbol("FOO-USD")
        assert caught.value.details == {"symbol": "FOO-USD"}
        assert "FOO-USD" in caught.value.message

    def test_pair_rules_come_from_the_table(self, market: MarketDataService) -> None:
        rules = market.pair_rules("ETH/USD")
        assert (rules.tick_size, rules.step_size) == (Decimal("0.01"), Decimal("0.0001"))
        assert len(market.pairs()) == SYMBOL_COUNT

    def test_mark_price_is_none_for_an_unknown_symbol(self, market: MarketDataService) -> None:
        assert market.mark_price("FOO/USD") is None
        assert market.mark_price("btc-usd") == market.ticker("BTC/USD").last


class TestAdvance:
    async def test_returns_each_symbols_latest_tick(self, market: MarketDataService) -> None:
        ticks = await market.advance(3)
        assert len(ticks) == SYMBOL_COUNT
        assert ticks["BTC/USD"].ticker.timestamp == START + timedelta(seconds=3)
        assert market.ticker("BTC/USD") == ticks["BTC/USD"].ticker

    async def test_rejects_zero_steps(self, market: MarketDataService) -> None:
        with pytest.raises(ValueError, match="steps"):
            await market.advance(0)

    async def test_caches_each_ticker(self, services: Services, market: MarketDataService) -> None:
        ticks = await market.advance(1)
        cached = await services.cache.get_json(ticker_key("BTC/USD"))
        ticker = ticks["BTC/USD"].ticker
        assert cached is not None
        assert cached["last"] == str(ticker.last)
        assert cached["spread"] == str(ticker.spread)
        assert cached["timestamp"].startswith("2025-06-02T12:00:01")

    async def test_writes_one_latest_ticker_row_per_symbol(
        self, services: Services, market: MarketDataService
    ) -> None:
        await market.advance(10)  # flushed at 5 s and 10 s of market time
        assert await _count(services, select(func.count()).select_from(PriceTicker)) == 12
        async with services.database.database.read() as session:
            row = await session.scalar(select(PriceTicker).where(PriceTicker.symbol == "BTC/USD"))
        assert row is not None
        assert row.price == market.ticker("BTC/USD").last
        assert row.observed_at == START + timedelta(seconds=10)

    async def test_upserts_closed_candles(
        self, services: Services, market: MarketDataService
    ) -> None:
        await market.advance(185)
        query = select(OHLCVCandle).where(
            OHLCVCandle.symbol == "BTC/USD", OHLCVCandle.timeframe == "1m"
        )
        async with services.database.database.read() as session:
            stored = list(await session.scalars(query.order_by(OHLCVCandle.open_time)))
        assert [c.open_time for c in stored] == [START + timedelta(minutes=i) for i in range(3)]
        live = await market.candles("BTC/USD", timeframe="1m", start=START, limit=3)
        assert [(c.open, c.high, c.low, c.close, c.volume) for c in stored] == [
            (c.open, c.high, c.low, c.close, c.volume) for c in live
        ]
        assert market.flush_errors == 0

    async def test_rewriting_a_candle_updates_it_in_place(self, settings: Settings) -> None:
        first = await _started(settings)
        await first.market_data.advance(130)
        await first.registry.stop()  # flushes
        # Same start: the new market writes candles at the same open times again.
        second = await _started(settings)
        try:
            await second.market_data.advance(130)
            await second.market_data.stop()
            candles = await second.market_data.candles(
                "BTC/USD", timeframe="1m", start=START, limit=2
            )
            query = select(func.count()).where(
                OHLCVCandle.symbol == "BTC/USD", OHLCVCandle.timeframe == "1m"
            )
            assert await _count(second, query) == 2
            async with second.database.database.read() as session:
                stored = list(
                    await session.scalars(
                        select(OHLCVCandle.close)
                        .where(OHLCVCandle.symbol == "BTC/USD", OHLCVCandle.timeframe == "1m")
                        .order_by(OHLCVCandle.open_time)
                    )
                )
            assert stored == [c.close for c in candles]
        finally:
            await second.registry.stop()

    async def test_restart_continues_from_the_last_stored_price(self, settings: Settings) -> None:
        first = await _started(settings)
        await first.market_data.advance(20)
        last = first.market_data.ticker("SOL/USD").last
        await first.registry.stop()
        second = await _started(settings, START + timedelta(hours=1))
        try:
            assert second.market_data.ticker("SOL/USD").last == last
        finally:
            await second.registry.stop()

    async def test_snapshots_at_most_one_per_symbol_per_interval(
        self, services: Services, market: MarketDataService
    ) -> None:
        await market.advance(150)
        async with services.database.database.read() as session:
            taken = list(
                await session.scalars(
                    select(OrderBookSnapshot.taken_at)
                    .where(OrderBookSnapshot.symbol == "BTC/USD")
                    .order_by(OrderBookSnapshot.taken_at)
                )
            )
            total = await session.scalar(select(func.count()).select_from(OrderBookSnapshot))
        assert taken == [START + timedelta(seconds=s) for s in (1, 61, 121)]
        assert total == 3 * SYMBOL_COUNT

    async def test_snapshot_holds_the_book(
        self, services: Services, market: MarketDataService
    ) -> None:
        ticks = await market.advance(5)
        async with services.database.database.read() as session:
            snapshot = await session.scalar(
                select(OrderBookSnapshot).where(OrderBookSnapshot.symbol == "ETH/USD")
            )
        assert snapshot is not None
        # Taken at the first step, which is not the last one.
        assert snapshot.taken_at == START + timedelta(seconds=1)
        assert snapshot.best_bid is not None
        assert snapshot.best_ask is not None
        assert snapshot.best_bid < snapshot.best_ask
        assert snapshot.spread == snapshot.best_ask - snapshot.best_bid
        assert len(snapshot.bids) == len(snapshot.asks) == 20
        assert snapshot.bids[0][0] == str(snapshot.best_bid)
        assert ticks["ETH/USD"].book.timestamp == START + timedelta(seconds=5)

    async def test_stop_flushes_what_is_pending(self, settings: Settings) -> None:
        services = await _started(settings)
        try:
            await services.market_data.advance(3)  # before the first flush
            await services.market_data.stop()
            query = select(func.count()).select_from(PriceTicker)
            assert await _count(services, query) == SYMBOL_COUNT
        finally:
            await services.registry.stop()


class TestListeners:
    async def test_listeners_run_in_order_and_a_failing_one_does_not_stop_others(
        self, market: MarketDataService
    ) -> None:
        calls: list[str] = []

        async def failing(ticks: Mapping[str, Tick]) -> None:
            calls.append("failing")
            raise RuntimeError("boom")

        async def recording(ticks: Mapping[str, Tick]) -> None:
            calls.append(f"recording:{len(ticks)}")

        market.add_tick_listener(failing)
        market.add_tick_listener(recording)
        await market.advance(2)
        assert calls == ["failing", "recording:12"] * 2
        assert market.listener_errors == 2

    async def test_listener_sees_the_recorded_state(self, market: MarketDataService) -> None:
        seen: list[bool] = []

        async def check(ticks: Mapping[str, Tick]) -> None:
            seen.append(market.ticker("BTC/USD") == ticks["BTC/USD"].ticker)

        market.add_tick_listener(check)
        await market.advance(2)
        assert seen == [True, True]

    async def test_unsubscribed_listener_is_not_called(self, market: MarketDataService) -> None:
        calls: list[int] = []

        async def listener(ticks: Mapping[str, Tick]) -> None:
            calls.append(1)

        remove = market.add_tick_listener(listener)
        await market.advance(1)
        remove()
        await market.advance(1)
        assert calls == [1]


class TestSubscribe:
    async def test_publishes_only_subscribed_symbols(
        self, services: Services, market: MarketDataService
    ) -> None:
        events: list[Event] = []
        # A handler that says which channels it wants, as the WebSocket hub does: none yet.
        services.event_bus.subscribe(events.append, wants=frozenset[str]().__contains__)
        await market.advance(1)
        assert events == []
        channel = market.subscribe("eth-usd")
        assert channel == "market:ETH/USD"
        ticks = await market.advance(2)
        assert [(e.channel, e.type, e.seq) for e in events] == [
            ("market:ETH/USD", "market_data", 1),
            ("market:ETH/USD", "market_data", 2),
        ]
        envelope = events[-1].envelope()
        assert set(envelope) == {"type", "timestamp", "channel", "seq", "data"}
        ticker = ticks["ETH/USD"].ticker
        assert envelope["data"]["symbol"] == "ETH/USD"
        assert envelope["data"]["bid"] == str(ticker.bid)
        assert envelope["data"]["ask"] == str(ticker.ask)

    async def test_publishes_symbols_a_websocket_client_listens_to(
        self, services: Services, market: MarketDataService
    ) -> None:
        events: list[Event] = []
        listened = {"market:SOL/USD"}
        services.event_bus.subscribe(events.append, wants=listened.__contains__)
        await market.advance(1)
        assert [(e.channel, e.seq) for e in events] == [("market:SOL/USD", 1)]
        listened.clear()
        await market.advance(1)
        assert len(events) == 1

    def test_unknown_symbol_cannot_be_subscribed(self, market: MarketDataService) -> None:
        with pytest.raises(NotFoundError):
            market.subscribe("NOPE-USD")


class TestOrderBook:
    def test_truncates_to_depth(self, market: MarketDataService) -> None:
        book = market.order_book("btc-usd", depth=2)
        assert (len(book.bids), len(book.asks)) == (2, 2)

    def test_rejects_bad_depth(self, market: MarketDataService) -> None:
        with pytest.raises(ValidationFailedError):
            market.order_book("BTC/USD", depth=0)


class TestCandles:
    async def test_fresh_install_has_backfilled_history(self, market: MarketDataService) -> None:
        candles = await market.candles("BTC/USD", timeframe="1h", limit=24)
        assert len(candles) == 24
        times = [c.open_time for c in candles]
        assert times == [START - timedelta(hours=23 - i) for i in range(24)]
        assert candles[-1].open_time == START  # the open live candle

    async def test_backfill_fills_only_before_the_earliest_stored_candle(
        self, services: Services, market: MarketDataService
    ) -> None:
        stored_at = START - timedelta(hours=5)
        async with services.database.database.transaction() as session:
            session.add(
                OHLCVCandle(
                    exchange="simulated",
                    symbol="BTC/USD",
                    timeframe="1h",
                    open_time=stored_at,
                    close_time=stored_at + timedelta(hours=1),
                    open=Decimal(1000),
                    high=Decimal(1001),
                    low=Decimal(999),
                    close=Decimal(1000),
                    volume=Decimal(1),
                    trade_count=1,
                )
            )
        candles = await market.candles("BTC/USD", timeframe="1h", limit=5)
        times = [c.open_time for c in candles]
        assert stored_at in times
        assert next(c for c in candles if c.open_time == stored_at).close == Decimal(1000)
        # Between the stored candle and the live market there is nothing to invent.
        assert times[-2:] == [stored_at, START]
        assert times[0] < stored_at

    async def test_start_selects_the_first_candles(self, market: MarketDataService) -> None:
        await market.advance(300)
        candles = await market.candles(
            "BTC/USD", timeframe="1m", start=START - timedelta(minutes=2), limit=4
        )
        assert [c.open_time for c in candles] == [
            START + timedelta(minutes=i) for i in range(-2, 2)
        ]

    async def test_end_bounds_the_latest_candles(self, market: MarketDataService) -> None:
        await market.advance(300)
        end = START + timedelta(minutes=2)
        candles = await market.candles("BTC/USD", timeframe="5m", end=end, limit=3)
        assert [c.open_time for c in candles] == [
            START - timedelta(minutes=10),
            START - timedelta(minutes=5),
            START,
        ]

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"timeframe": "3m"}, "timeframe"),
            ({"timeframe": "1m", "limit": 0}, "limit"),
            ({"timeframe": "1m", "limit": 1001}, "limit"),
            ({"timeframe": "1m", "start": START, "end": START}, "before"),
        ],
    )
    async def test_rejects_bad_queries(
        self, market: MarketDataService, kwargs: dict[str, Any], match: str
    ) -> None:
        with pytest.raises(ValidationFailedError, match=match):
            await market.candles("BTC/USD", **kwargs)


class TestHealth:
    async def test_reports_the_market(self, market: MarketDataService) -> None:
        await market.advance(1)
        health = await market.health()
        assert health.status == "healthy"
        assert health.data["steps"] == 1
        assert health.data["symbols"] == SYMBOL_COUNT


class TestStream:
    async def test_loop_steps_the_market_through_the_pipeline(
        self, make_settings: Callable[..., Settings], database_url: str
    ) -> None:
        settings = make_settings(
            database={"url": database_url},
            redis={"url": ""},
            market_data={"market_data_stream": True, "simulation_tick_seconds": 0.01},
        )
        services = await _started(settings)
        try:
            stepped = asyncio.Event()

            async def listener(ticks: Mapping[str, Tick]) -> None:
                if services.market_data.ticker("BTC/USD").timestamp >= START + timedelta(
                    seconds=0.03
                ):
                    stepped.set()

            services.market_data.add_tick_listener(listener)
            await stepped.wait()
            assert (await services.market_data.health()).status == "healthy"
        finally:
            await services.registry.stop()
