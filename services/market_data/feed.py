"""What the feed writes and starts from: the rows of the queued tickers, candles and book
snapshots (written in one transaction by `write_pending`), and each pair's price process
under the table's rules (`spec_for`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import AssetClass, BookLevel, Candle, OrderBook, PairRules, Ticker
from connectors.universe import SymbolSpec
from database.orm import OrderBookSnapshot, TradingPair
from database.repositories import market_data as market_repo
from database.seeds.catalog import SIMULATED_EXCHANGE
from models.base import decimal_to_str
from utils.candles import timeframe_delta

SNAPSHOT_DEPTH = 20


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


def spec_for(row: TradingPair, spec: SymbolSpec, last_price: Decimal | None) -> SymbolSpec:
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


async def write_pending(
    session: AsyncSession,
    tickers: Mapping[str, Ticker],
    candles: Mapping[tuple[str, str, datetime], Candle],
    snapshots: Sequence[tuple[OrderBook, int]],
) -> None:
    """Tickers and candles upserted (rewriting is harmless), then the snapshots added."""
    if tickers:
        await market_repo.upsert_tickers(session, ticker_rows(tickers))
    if candles:
        await market_repo.upsert_candles(session, candle_rows(candles.values()))
    await market_repo.add_book_snapshots(session, snapshot_rows(snapshots))


def ticker_rows(tickers: Mapping[str, Ticker]) -> list[dict[str, Any]]:
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


def candle_rows(candles: Iterable[Candle]) -> list[dict[str, Any]]:
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


def snapshot_rows(snapshots: Sequence[tuple[OrderBook, int]]) -> list[OrderBookSnapshot]:
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


def _levels(levels: Sequence[BookLevel]) -> list[list[str]]:
    return [[decimal_to_str(level.price), decimal_to_str(level.quantity)] for level in levels]
