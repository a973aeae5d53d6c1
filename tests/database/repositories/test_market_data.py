"""database/repositories/market_data.py: pairs, tickers, candles and book snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update

from database.connection import Database
from database.orm import OHLCVCandle, OrderBookSnapshot, PriceTicker, TradingPair
from database.repositories import market_data
from tests.factories import create_trading_pair

D = Decimal
SIM = "simulated"
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def ticker_row(symbol: str, price: str, *, exchange: str = SIM) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "exchange": exchange,
        "symbol": symbol,
        "price": D(price),
        "bid": D(price) - 1,
        "ask": D(price) + 1,
        "volume_24h": D(5),
        "open_24h": D(price),
        "change_24h": D(0),
        "change_percent_24h": D(0),
        "raw_data": {},
        "observed_at": now,
        "created_at": now,
        "updated_at": now,
    }


def candle_row(
    open_time: datetime, close: str, *, symbol: str = "BTC/USD", timeframe: str = "1m"
) -> dict[str, Any]:
    price = D(close)
    return {
        "exchange": SIM,
        "symbol": symbol,
        "timeframe": timeframe,
        "open_time": open_time,
        "close_time": open_time + timedelta(minutes=1),
        "open": price,
        "high": price + 1,
        "low": price - 1,
        "close": price,
        "volume": D(1),
        "trade_count": 3,
        "created_at": datetime.now(UTC),
    }


async def test_active_pairs_are_the_exchanges_active_ones(db: Database) -> None:
    await create_trading_pair(db, symbol="BTC/USD")
    await create_trading_pair(db, symbol="ETH/USD")
    await create_trading_pair(db, symbol="BTC/USD", exchange="other")
    async with db.transaction() as session:
        await session.execute(
            update(TradingPair).where(TradingPair.symbol == "ETH/USD").values(is_active=False)
        )
    async with db.read() as session:
        pairs = await market_data.active_pairs(session, exchange=SIM)
    assert [(p.exchange, p.symbol) for p in pairs] == [(SIM, "BTC/USD")]


async def test_upsert_tickers_overwrites_the_stored_ticker(db: Database) -> None:
    async with db.transaction() as session:
        await market_data.upsert_tickers(
            session, [ticker_row("BTC/USD", "100"), ticker_row("ETH/USD", "10")]
        )
        await market_data.upsert_tickers(session, [ticker_row("BTC/USD", "100", exchange="other")])
    async with db.read() as session:
        first = await session.scalar(select(PriceTicker).where(PriceTicker.symbol == "ETH/USD"))
    assert first is not None
    async with db.transaction() as session:
        await market_data.upsert_tickers(session, [ticker_row("ETH/USD", "12.5")])
    async with db.read() as session:
        assert await market_data.last_prices(session, exchange=SIM) == {
            "BTC/USD": D(100),
            "ETH/USD": D("12.5"),
        }
        rows = list(await session.scalars(select(PriceTicker).where(PriceTicker.exchange == SIM)))
    assert len(rows) == 2
    updated = next(r for r in rows if r.symbol == "ETH/USD")
    # The same row, its id and created_at kept.
    assert (updated.id, updated.created_at) == (first.id, first.created_at)
    assert updated.bid == D("11.5")


async def test_upsert_candles_overwrites_the_same_open_time_only(db: Database) -> None:
    async with db.transaction() as session:
        await market_data.upsert_candles(
            session, [candle_row(T0, "100"), candle_row(T0 + timedelta(minutes=1), "101")]
        )
    async with db.transaction() as session:
        await market_data.upsert_candles(
            session, [candle_row(T0, "105"), candle_row(T0, "7", timeframe="5m")]
        )
    async with db.read() as session:
        rows = list(
            await session.scalars(
                select(OHLCVCandle).order_by(OHLCVCandle.timeframe, OHLCVCandle.open_time)
            )
        )
    assert [(r.timeframe, r.open_time, r.close) for r in rows] == [
        ("1m", T0, D(105)),
        ("1m", T0 + timedelta(minutes=1), D(101)),
        ("5m", T0, D(7)),
    ]


async def _store_series(db: Database) -> None:
    async with db.transaction() as session:
        await market_data.upsert_candles(
            session,
            [candle_row(T0 + timedelta(minutes=i), str(100 + i)) for i in range(5)]
            # Other series, earlier: never part of the BTC/USD 1m answers.
            + [candle_row(T0 - timedelta(hours=1), "50", symbol="ETH/USD")]
            + [candle_row(T0 - timedelta(hours=1), "50", timeframe="5m")],
        )


async def test_earliest_candle_time_is_per_series(db: Database) -> None:
    async with db.read() as session:
        assert (
            await market_data.earliest_candle_time(
                session, exchange=SIM, symbol="BTC/USD", timeframe="1m"
            )
            is None
        )
    await _store_series(db)
    async with db.read() as session:
        earliest = await market_data.earliest_candle_time(
            session, exchange=SIM, symbol="BTC/USD", timeframe="1m"
        )
        other_exchange = await market_data.earliest_candle_time(
            session, exchange="other", symbol="BTC/USD", timeframe="1m"
        )
    assert earliest == T0
    assert other_exchange is None


async def test_stored_candles_from_since_are_the_oldest_first(db: Database) -> None:
    await _store_series(db)
    async with db.read() as session:
        rows = await market_data.stored_candles(
            session,
            exchange=SIM,
            symbol="BTC/USD",
            timeframe="1m",
            since=T0 + timedelta(minutes=1),
            until=None,
            limit=2,
        )
    assert [r.open_time for r in rows] == [T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]


async def test_stored_candles_without_since_are_the_latest_newest_first(db: Database) -> None:
    await _store_series(db)
    async with db.read() as session:
        latest = await market_data.stored_candles(
            session,
            exchange=SIM,
            symbol="BTC/USD",
            timeframe="1m",
            since=None,
            until=None,
            limit=2,
        )
        # `until` is inclusive.
        until = await market_data.stored_candles(
            session,
            exchange=SIM,
            symbol="BTC/USD",
            timeframe="1m",
            since=None,
            until=T0 + timedelta(minutes=2),
            limit=10,
        )
    assert [r.open_time for r in latest] == [T0 + timedelta(minutes=4), T0 + timedelta(minutes=3)]
    assert [r.close for r in until] == [D(102), D(101), D(100)]


async def test_candle_page_is_start_inclusive_end_exclusive_oldest_first(db: Database) -> None:
    await _store_series(db)
    async with db.read() as session:

        async def page(start: int, end: int, limit: int) -> list[datetime]:
            rows = await market_data.candle_page(
                session,
                exchange=SIM,
                symbol="BTC/USD",
                timeframe="1m",
                start=T0 + timedelta(minutes=start),
                end=T0 + timedelta(minutes=end),
                limit=limit,
            )
            return [r.open_time for r in rows]

        assert await page(1, 4, 10) == [T0 + timedelta(minutes=m) for m in (1, 2, 3)]
        assert await page(0, 5, 2) == [T0, T0 + timedelta(minutes=1)]
        assert await page(-60, 0, 10) == []


async def test_add_book_snapshots_writes_each(db: Database) -> None:
    rows = [
        OrderBookSnapshot(
            exchange=SIM,
            symbol="BTC/USD",
            bids=[["99", "1"]],
            asks=[["101", "2"]],
            best_bid=D(99),
            best_ask=D(101),
            spread=D(2),
            mid=D(100),
            sequence=sequence,
            taken_at=T0 + timedelta(seconds=sequence),
        )
        for sequence in (1, 2)
    ]
    async with db.transaction() as session:
        await market_data.add_book_snapshots(session, rows)
        await market_data.add_book_snapshots(session, [])
    async with db.read() as session:
        stored = list(
            await session.scalars(select(OrderBookSnapshot).order_by(OrderBookSnapshot.sequence))
        )
        count = await session.scalar(select(func.count()).select_from(OrderBookSnapshot))
    assert count == 2
    assert [(s.sequence, s.asks, s.mid) for s in stored] == [
        (1, [["101", "2"]], D(100)),
        (2, [["101", "2"]], D(100)),
    ]
