"""The daily closes the risk metrics and the stress tests read: a symbol's closed daily
candles of the last `days` days before `today` (UTC), exact. Today's candle is still
open (it moves) and is never read, so nothing measured on a day changes during it."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from services.market_data.history import CandleSource, closed_candles


async def daily_closes(
    market: CandleSource, symbol: str, *, today: date, days: int
) -> dict[date, Decimal]:
    """Close by day, of the `days + 1` days before `today`, paged past the market's
    page size; a close of zero or less is left out. NotFoundError for an unknown symbol."""
    midnight = datetime.combine(today, time(), UTC)
    candles = await closed_candles(
        market, symbol, timeframe="1d", start=midnight - timedelta(days=days + 1), until=midnight
    )
    return {c.open_time.date(): c.close for c in candles if c.close > 0}
