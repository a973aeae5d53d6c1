"""Queries on market data: trading pairs, tickers, candles and book snapshots.

None of these tables is user-owned: every query is scoped by exchange (and symbol).
Flush, never commit: the service owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from database.locking import upsert
from database.orm import OHLCVCandle, OrderBookSnapshot, PriceTicker, TradingPair

TICKER_KEYS = ("exchange", "symbol")
CANDLE_KEYS = ("symbol", "exchange", "timeframe", "open_time")


async def active_pairs(session: AsyncSession, *, exchange: str) -> list[TradingPair]:
    """The exchange's active trading pairs (in no particular order)."""
    query = select(TradingPair).where(
        TradingPair.exchange == exchange, TradingPair.is_active.is_(True)
    )
    return list(await session.scalars(query))


async def last_prices(session: AsyncSession, *, exchange: str) -> dict[str, Decimal]:
    """Symbol -> the last price of its stored ticker on the exchange."""
    query = select(PriceTicker.symbol, PriceTicker.price).where(PriceTicker.exchange == exchange)
    return {row.symbol: row.price for row in await session.execute(query)}


async def upsert_tickers(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert the tickers; one already stored for (exchange, symbol) is overwritten."""
    await session.execute(upsert(session, PriceTicker.__table__, TICKER_KEYS, rows), rows)


async def upsert_candles(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert the candles; one already stored for (symbol, exchange, timeframe,
    open_time) is overwritten."""
    await session.execute(upsert(session, OHLCVCandle.__table__, CANDLE_KEYS, rows), rows)


async def add_book_snapshots(session: AsyncSession, rows: Sequence[OrderBookSnapshot]) -> None:
    session.add_all(rows)
    await session.flush()


async def earliest_candle_time(
    session: AsyncSession, *, exchange: str, symbol: str, timeframe: str
) -> datetime | None:
    """The open time of the series' earliest stored candle; None when none is stored."""
    query = select(func.min(OHLCVCandle.open_time)).where(
        *_series(exchange=exchange, symbol=symbol, timeframe=timeframe)
    )
    return await session.scalar(query)


async def stored_candles(
    session: AsyncSession,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[OHLCVCandle]:
    """The series' candles opening in [since, until] (either bound optional): with
    `since`, the first `limit` oldest first; without, the latest `limit` newest first."""
    query = select(OHLCVCandle).where(
        *_series(exchange=exchange, symbol=symbol, timeframe=timeframe)
    )
    if since is not None:
        query = query.where(OHLCVCandle.open_time >= since)
    if until is not None:
        query = query.where(OHLCVCandle.open_time <= until)
    order = OHLCVCandle.open_time.asc() if since is not None else OHLCVCandle.open_time.desc()
    return list(await session.scalars(query.order_by(order).limit(limit)))


def _series(*, exchange: str, symbol: str, timeframe: str) -> tuple[Any, ...]:
    return (
        OHLCVCandle.symbol == symbol,
        OHLCVCandle.exchange == exchange,
        OHLCVCandle.timeframe == timeframe,
    )


async def candle_page(
    session: AsyncSession,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    start: datetime,
    end: datetime,
    limit: int,
) -> list[OHLCVCandle]:
    """The series' first `limit` candles opening in [start, end), oldest first."""
    query = (
        select(OHLCVCandle)
        .where(
            *_series(exchange=exchange, symbol=symbol, timeframe=timeframe),
            OHLCVCandle.open_time >= start,
            OHLCVCandle.open_time < end,
        )
        .order_by(OHLCVCandle.open_time.asc())
        .limit(limit)
    )
    return list(await session.scalars(query))
