"""Market data schemas: tickers, books, candles, pairs, the watchlist, subscriptions.

Prices and quantities travel as decimal strings. Symbols are `BASE/QUOTE` ("BTC/USD").
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from models.base import AppModel, DecimalStr, InputModel
from models.enums import AssetClass, Timeframe

SYMBOL_FORMS = (
    "A pair such as `BTC/USD`. In a URL the slash may be written as a dash or encoded: "
    "`BTC-USD`, `btc-usd`, `BTC%2FUSD` and `BTC/USD` all mean `BTC/USD`."
)


class TickerRead(AppModel):
    symbol: str
    bid: DecimalStr
    ask: DecimalStr
    last: DecimalStr
    spread: DecimalStr = Field(description="ask - bid")
    volume_24h: DecimalStr = Field(description="Traded over the last 24h, in base units.")
    change_24h: DecimalStr = Field(description="last - the price 24h ago.")
    change_percent_24h: DecimalStr
    timestamp: datetime = Field(description="When the market produced this ticker (UTC).")


class BookLevelRead(AppModel):
    price: DecimalStr
    quantity: DecimalStr


class OrderBookRead(AppModel):
    bids: list[BookLevelRead] = Field(description="Best (highest) first.")
    asks: list[BookLevelRead] = Field(description="Best (lowest) first.")
    timestamp: datetime


class LiveDataRead(TickerRead):
    book: OrderBookRead | None = Field(
        default=None, description="The top `depth` levels a side, when `?depth=N` is given."
    )


class WatchlistItemRead(AppModel):
    symbol: str
    added_at: datetime
    ticker: TickerRead | None = Field(description="Null when the pair is no longer traded.")


class WatchlistRead(AppModel):
    items: list[WatchlistItemRead]


class WatchlistAdd(InputModel):
    symbol: str = Field(min_length=1, max_length=32, description=SYMBOL_FORMS)


class CandleRead(AppModel):
    open_time: datetime
    open: DecimalStr
    high: DecimalStr
    low: DecimalStr
    close: DecimalStr
    volume: DecimalStr
    trades: int


class CandleList(AppModel):
    symbol: str
    timeframe: Timeframe
    items: list[CandleRead] = Field(description="Oldest first.")


class PairRead(AppModel):
    symbol: str
    base_asset: str
    quote_asset: str
    asset_class: AssetClass
    tick_size: DecimalStr = Field(description="Prices are multiples of this.")
    step_size: DecimalStr = Field(description="Quantities are multiples of this.")
    min_quantity: DecimalStr
    max_quantity: DecimalStr
    min_notional: DecimalStr = Field(description="Smallest order value in the quote asset.")
    maker_fee_bps: DecimalStr
    taker_fee_bps: DecimalStr


class PairList(AppModel):
    exchange: str
    items: list[PairRead]


class SubscriptionRead(AppModel):
    symbol: str
    channel: str = Field(description="Subscribe to it over /ws to receive the ticks.")
    event_type: str = "market_data"
