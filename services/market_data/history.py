"""Historical candles: the query's checks, the stored series read, and the selection of
the merged candles (the merge rule is in service.py's module doc)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import Candle
from core.exceptions import ValidationFailedError
from database.orm import OHLCVCandle
from database.repositories import market_data as market_repo
from database.seeds.catalog import SIMULATED_EXCHANGE
from models.enums import Timeframe
from utils.candles import align, timeframe_delta

MAX_CANDLES = 1000
TIMEFRAMES = tuple(t.value for t in Timeframe)
_TICK = timedelta(microseconds=1)


def as_utc(moment: datetime | None) -> datetime | None:
    # A query string without an offset means UTC.
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def check_candle_query(
    timeframe: str, start: datetime | None, end: datetime | None, limit: int
) -> None:
    if timeframe not in TIMEFRAMES:
        raise ValidationFailedError(
            f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}",
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


async def stored_candles(
    session: AsyncSession,
    symbol: str,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> tuple[datetime | None, list[Candle]]:
    """The earliest stored open time of the series, and the stored candles selected."""
    series = {"exchange": SIMULATED_EXCHANGE, "symbol": symbol, "timeframe": timeframe}
    earliest = await market_repo.earliest_candle_time(session, **series)
    rows = await market_repo.stored_candles(
        session,
        **series,
        since=None if start is None else align(start, timeframe),
        until=end,
        limit=limit,
    )
    return earliest, [candle_of(row) for row in rows]


def candle_of(row: OHLCVCandle) -> Candle:
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


def select_candles(candles: Sequence[Candle], *, from_start: bool, limit: int) -> list[Candle]:
    ordered = sorted(candles, key=lambda c: c.open_time)
    return ordered[:limit] if from_start else ordered[-limit:]


class CandleSource(Protocol):
    """The market data service's candle query, as the readers below need it."""

    async def candles(
        self,
        symbol: str,
        *,
        timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 500,
    ) -> list[Candle]: ...


async def closed_candles(
    market: CandleSource,
    symbol: str,
    *,
    timeframe: str,
    start: datetime,
    until: datetime,
    on_page: Callable[[int], Awaitable[None]] | None = None,
) -> list[Candle]:
    """The symbol's candles opening at `start` or later that have closed by `until`,
    oldest first, read a page of MAX_CANDLES at a time (past the query's own limit).
    `on_page(read so far)` is awaited after each page (it may raise to stop the read)."""
    delta = timeframe_delta(timeframe)
    last_open = until - delta  # the latest open whose candle has closed by `until`
    candles: list[Candle] = []
    cursor = start
    while cursor <= last_open:
        page = await market.candles(
            symbol, timeframe=timeframe, start=cursor, end=until - _TICK, limit=MAX_CANDLES
        )
        candles.extend(c for c in page if cursor <= c.open_time <= last_open)
        if on_page is not None:
            await on_page(len(candles))
        if len(page) < MAX_CANDLES:
            break
        cursor = page[-1].open_time + delta
    return candles
