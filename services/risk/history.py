"""The daily closes the risk metrics and the stress tests read: a symbol's closed daily
candles of the last `days` days before `today` (UTC), exact. Today's candle is still
open (it moves) and is never read, so nothing measured on a day changes during it."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Protocol

from connectors.base import Candle
from services.market_data.history import MAX_CANDLES

_DAY = timedelta(days=1)


class Candles(Protocol):
    async def candles(
        self,
        symbol: str,
        *,
        timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 500,
    ) -> list[Candle]: ...


async def daily_closes(
    market: Candles, symbol: str, *, today: date, days: int
) -> dict[date, Decimal]:
    """Close by day, of the `days + 1` days before `today`, paged past the market's
    page size; a close of zero or less is left out. NotFoundError for an unknown symbol."""
    midnight = datetime.combine(today, time(), UTC)
    start = midnight - _DAY * (days + 1)
    end = midnight - timedelta(microseconds=1)
    by_day: dict[date, Decimal] = {}
    while start <= end:
        page = await market.candles(symbol, timeframe="1d", start=start, end=end, limit=MAX_CANDLES)
        for candle in page:
            if candle.open_time >= start and candle.close > 0:
                by_day[candle.open_time.date()] = candle.close
        if len(page) < MAX_CANDLES:
            break
        start = page[-1].open_time + _DAY
    return by_day
