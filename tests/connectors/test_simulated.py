from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from connectors.base import OrderBook, Tick, UnknownSymbolError
from connectors.simulated import ReplayFinishedError, SimulatedExchange
from connectors.universe import DEFAULT_UNIVERSE
from utils.candles import aggregate

START = datetime(2025, 1, 1, tzinfo=UTC)


def _path(exchange: SimulatedExchange, steps: int) -> list[dict[str, Tick]]:
    return [exchange.step() for _ in range(steps)]


@pytest.fixture(scope="module")
def walked() -> SimulatedExchange:
    """Every default symbol after two simulated hours."""
    exchange = SimulatedExchange(seed=7, start=START, history=30)
    exchange.advance(7200)
    return exchange


class TestDeterminism:
    def test_same_seed_gives_identical_ticks(self) -> None:
        first = _path(SimulatedExchange(seed=1, start=START), 300)
        second = _path(SimulatedExchange(seed=1, start=START), 300)
        assert first == second

    def test_different_seed_gives_different_ticks(self) -> None:
        first = _path(SimulatedExchange(seed=1, start=START), 50)
        second = _path(SimulatedExchange(seed=2, start=START), 50)
        assert first[-1]["BTC/USD"].ticker.last != second[-1]["BTC/USD"].ticker.last

    def test_symbol_path_does_not_depend_on_the_rest_of_the_universe(self) -> None:
        alone = SimulatedExchange(
            seed=1, start=START, universe={"ETH/USD": DEFAULT_UNIVERSE["ETH/USD"]}
        )
        everyone = SimulatedExchange(seed=1, start=START)
        assert alone.advance(100)["ETH/USD"] == everyone.advance(100)["ETH/USD"]

    async def test_reads_consume_no_randomness(self) -> None:
        read = SimulatedExchange(seed=1, start=START)
        untouched = SimulatedExchange(seed=1, start=START)
        for _ in range(20):
            read.step()
            await read.fetch_order_book("BTC/USD", depth=3)
            await read.fetch_candles("BTC/USD", timeframe="1m")
        untouched.advance(20)
        assert read.last_tick("BTC/USD") == untouched.last_tick("BTC/USD")

    def test_backfill_is_reproducible(self) -> None:
        first = SimulatedExchange(seed=3, start=START, history=50)
        second = SimulatedExchange(seed=3, start=START, history=50)
        candles = asyncio.run(first.fetch_candles("SOL/USD", timeframe="1h"))
        assert candles == asyncio.run(second.fetch_candles("SOL/USD", timeframe="1h"))


class TestPricesAndBook:
    def test_prices_on_tick_and_quantities_on_step(self, walked: SimulatedExchange) -> None:
        for symbol in walked.symbols:
            rules = walked.spec(symbol).rules
            tick = walked.last_tick(symbol)
            t = tick.ticker
            for price in (t.bid, t.ask, t.last):
                assert price > 0
                assert price % rules.tick_size == 0
            assert tick.trade_volume % rules.step_size == 0
            for level in (*tick.book.bids, *tick.book.asks):
                assert level.price % rules.tick_size == 0
                assert level.quantity % rules.step_size == 0
                assert level.quantity >= rules.min_quantity

    def test_bid_below_ask_and_spread_within_band(self, walked: SimulatedExchange) -> None:
        for symbol in walked.symbols:
            spec = walked.spec(symbol)
            tick = spec.rules.tick_size
            simulator = SimulatedExchange(seed=11, start=START, universe={symbol: spec}, history=0)
            for ticks in _path(simulator, 500):
                t = ticks[symbol].ticker
                assert t.bid < t.ask
                # Spread is a whole number of ticks, rounded up from the band in bps.
                assert t.spread >= spec.min_spread_bps * t.mid / 10_000 - tick
                assert t.spread <= spec.max_spread_bps * t.mid / 10_000 + 2 * tick

    def test_book_is_finite_and_ordered(self, walked: SimulatedExchange) -> None:
        for symbol in walked.symbols:
            book = walked.last_tick(symbol).book
            levels = walked.spec(symbol).depth.levels
            assert 0 < len(book.bids) <= levels
            assert 0 < len(book.asks) <= levels
            bids = [level.price for level in book.bids]
            asks = [level.price for level in book.asks]
            assert bids == sorted(bids, reverse=True)
            assert len(set(bids)) == len(bids)
            assert asks == sorted(asks)
            assert len(set(asks)) == len(asks)
            assert book.best_bid is not None
            assert book.best_ask is not None
            assert book.best_bid < book.best_ask
            ticker = walked.last_tick(symbol).ticker
            assert (book.best_bid, book.best_ask) == (ticker.bid, ticker.ask)

    def test_price_moves_with_realistic_volatility(self, walked: SimulatedExchange) -> None:
        # Two hours at 55% a year: a few tenths of a percent, never a 20% jump.
        btc = walked.last_tick("BTC/USD").ticker.last
        start = DEFAULT_UNIVERSE["BTC/USD"].start_price
        assert btc != start
        assert abs(btc / start - 1) < Decimal("0.2")

    async def test_fetch_order_book_truncates_to_depth(self, walked: SimulatedExchange) -> None:
        book = await walked.fetch_order_book("ETH/USD", depth=3)
        assert isinstance(book, OrderBook)
        assert (len(book.bids), len(book.asks)) == (3, 3)
        with pytest.raises(ValueError, match="depth"):
            await walked.fetch_order_book("ETH/USD", depth=0)

    def test_ticks_carry_the_simulated_clock(self) -> None:
        exchange = SimulatedExchange(seed=1, start=START, tick_seconds=0.5)
        ticks = exchange.advance(10)
        assert exchange.now == START + timedelta(seconds=5)
        assert all(t.ticker.timestamp == exchange.now for t in ticks.values())

    def test_24h_stats_are_consistent(self, walked: SimulatedExchange) -> None:
        for symbol in walked.symbols:
            t = walked.last_tick(symbol).ticker
            assert t.volume_24h > 0
            opened = t.last - t.change_24h
            assert opened > 0
            assert abs(t.change_percent_24h - t.change_24h * 100 / opened) < Decimal("0.001")


class TestCandles:
    async def test_candles_are_ohlc_consistent(self, walked: SimulatedExchange) -> None:
        for timeframe in ("1m", "5m", "15m", "1h", "4h", "1d"):
            candles = await walked.fetch_candles("BTC/USD", timeframe=timeframe, limit=1000)
            assert candles
            times = [c.open_time for c in candles]
            assert times == sorted(times)
            assert len(set(times)) == len(times)
            for c in candles:
                assert 0 < c.low <= min(c.open, c.close)
                assert c.high >= max(c.open, c.close)

    async def test_live_five_minutes_are_the_roll_up_of_live_minutes(
        self, walked: SimulatedExchange
    ) -> None:
        one = await walked.fetch_candles("ETH/USD", timeframe="1m", start=START, limit=1000)
        five = await walked.fetch_candles("ETH/USD", timeframe="5m", start=START, limit=1000)
        assert aggregate(one, "5m") == five

    async def test_history_is_backfilled_and_joins_the_start_price(self) -> None:
        exchange = SimulatedExchange(seed=1, start=START, history=10)
        candles = await exchange.fetch_candles("BTC/USD", timeframe="1h")
        backfill = [c for c in candles if c.open_time < START]
        assert len(backfill) == 10
        assert backfill[-1].close == DEFAULT_UNIVERSE["BTC/USD"].start_price
        assert backfill[-1].open_time == START - timedelta(hours=1)

    async def test_live_candles_are_kept_without_history(self) -> None:
        exchange = SimulatedExchange(seed=1, start=START, history=0)
        exchange.advance(600)
        candles = await exchange.fetch_candles("BTC/USD", timeframe="1m")
        assert len(candles) == 11
        assert candles[0].open_time == START

    async def test_start_and_limit_select_the_first_candles(
        self, walked: SimulatedExchange
    ) -> None:
        since = START + timedelta(minutes=10)
        candles = await walked.fetch_candles("BTC/USD", timeframe="1m", start=since, limit=3)
        assert [c.open_time for c in candles] == [since + timedelta(minutes=i) for i in range(3)]
        latest = await walked.fetch_candles("BTC/USD", timeframe="1m", limit=2)
        assert latest[-1].open_time == START + timedelta(hours=2)

    def test_closed_candles_are_drained_once(self) -> None:
        exchange = SimulatedExchange(seed=1, start=START, history=0)
        exchange.advance(120)
        closed = exchange.drain_closed_candles()
        one_minute = [c for c in closed if c.symbol == "BTC/USD" and c.timeframe == "1m"]
        assert [c.open_time for c in one_minute] == [START, START + timedelta(minutes=1)]
        assert exchange.drain_closed_candles() == []

    async def test_bad_candle_requests_raise(self, walked: SimulatedExchange) -> None:
        with pytest.raises(ValueError, match="unknown timeframe"):
            await walked.fetch_candles("BTC/USD", timeframe="3m")
        with pytest.raises(ValueError, match="limit"):
            await walked.fetch_candles("BTC/USD", timeframe="1m", limit=0)


class TestReplay:
    async def test_replay_reproduces_the_candles(self, walked: SimulatedExchange) -> None:
        source = await walked.fetch_candles("BTC/USD", timeframe="1m", start=START, limit=30)
        replay = SimulatedExchange.from_candles({"BTC/USD": source})
        closes = []
        while not replay.finished:
            ticks = replay.step()
            closes.append(ticks["BTC/USD"].ticker.last)
        assert closes[3::4] == [c.close for c in source]
        replayed = await replay.fetch_candles("BTC/USD", timeframe="1m", limit=1000)
        assert replayed == source
        with pytest.raises(ReplayFinishedError):
            replay.step()

    def test_replay_book_is_consistent(self, walked: SimulatedExchange) -> None:
        source = asyncio.run(walked.fetch_candles("ETH/USD", timeframe="1m", start=START, limit=5))
        replay = SimulatedExchange.from_candles({"ETH/USD": source})
        tick = replay.advance(7)["ETH/USD"]
        assert tick.ticker.bid < tick.ticker.ask
        assert tick.book.best_bid == tick.ticker.bid

    def test_bad_replays_raise(self, walked: SimulatedExchange) -> None:
        source = asyncio.run(walked.fetch_candles("BTC/USD", timeframe="1m", start=START, limit=3))
        with pytest.raises(ValueError, match="nothing to replay"):
            SimulatedExchange.from_candles({})
        with pytest.raises(UnknownSymbolError):
            SimulatedExchange.from_candles({"FOO/USD": source})
        with pytest.raises(ValueError, match="time order"):
            SimulatedExchange.from_candles({"BTC/USD": list(reversed(source))})
        with pytest.raises(ValueError, match="no candles"):
            SimulatedExchange.from_candles({"BTC/USD": []})


class TestBadInputs:
    def test_unknown_symbol_raises(self, walked: SimulatedExchange) -> None:
        with pytest.raises(UnknownSymbolError):
            walked.last_tick("FOO/USD")

    def test_lower_case_symbol_is_found(self, walked: SimulatedExchange) -> None:
        assert walked.last_tick("btc/usd").ticker.symbol == "BTC/USD"

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"tick_seconds": 0}, "tick_seconds"),
            ({"tick_seconds": float("nan")}, "tick_seconds"),
            ({"history": -1}, "history"),
            ({"universe": {}}, "empty"),
            ({"universe": {"X/USD": DEFAULT_UNIVERSE["BTC/USD"]}}, "does not match"),
        ],
    )
    def test_bad_construction_raises(self, kwargs: dict[str, object], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            SimulatedExchange(seed=1, **kwargs)  # type: ignore[arg-type]

    def test_advance_needs_a_step(self, walked: SimulatedExchange) -> None:
        with pytest.raises(ValueError, match="steps"):
            walked.advance(0)


class TestStream:
    async def test_run_hands_each_step_to_the_callback(self) -> None:
        exchange = SimulatedExchange(seed=1, start=START, history=0)
        seen: list[datetime] = []
        done = asyncio.Event()

        async def on_tick(ticks: Mapping[str, Tick]) -> None:
            seen.append(exchange.now)
            if len(seen) == 3:
                done.set()

        task = asyncio.create_task(exchange.run(on_tick, interval_seconds=0))
        await done.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert seen[:3] == [START + timedelta(seconds=i) for i in (1, 2, 3)]
