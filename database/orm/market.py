"""Market reference and market data: tradable pairs, tickers, candles, book snapshots,
and the symbols a user watches."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from database.orm.base import Base, CreatedAt, Timestamps, UUIDPrimaryKey
from database.orm.constraints import non_negative, num, one_of, positive
from database.orm.types import JSONType, Money, UTCDateTime, utcnow
from database.orm.user import UserOwned
from models.enums import AssetClass, Timeframe


class TradingPair(UUIDPrimaryKey, Timestamps, Base):
    """What an exchange lets us trade and in which increments; orders are rounded to
    `tick_size` and `step_size` and refused below `min_quantity` or `min_notional`."""

    __tablename__ = "trading_pairs"
    __table_args__ = (
        UniqueConstraint("exchange", "symbol"),
        one_of("asset_class", AssetClass),
        *positive("tick_size", "step_size", "max_quantity"),
        *non_negative("min_quantity", "min_notional", "maker_fee_bps", "taker_fee_bps"),
        CheckConstraint(
            f"max_quantity IS NULL OR {num('min_quantity')} <= {num('max_quantity')}",
            name="quantity_bounds",
        ),
    )

    exchange: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(32))
    base_asset: Mapped[str] = mapped_column(String(16))
    quote_asset: Mapped[str] = mapped_column(String(16))
    asset_class: Mapped[str] = mapped_column(String(16))
    tick_size: Mapped[Decimal] = mapped_column(Money)
    step_size: Mapped[Decimal] = mapped_column(Money)
    min_quantity: Mapped[Decimal] = mapped_column(Money)
    # Null: the exchange sets no maximum.
    max_quantity: Mapped[Decimal | None] = mapped_column(Money)
    min_notional: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    maker_fee_bps: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    taker_fee_bps: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class PriceTicker(UUIDPrimaryKey, Timestamps, Base):
    """The latest ticker of a symbol on an exchange: one row, overwritten on each update."""

    __tablename__ = "price_tickers"
    __table_args__ = (
        UniqueConstraint("exchange", "symbol"),
        *positive("price", "bid", "ask"),
        *non_negative("volume_24h", "quote_volume_24h", "market_cap"),
    )

    exchange: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(32), index=True)
    price: Mapped[Decimal] = mapped_column(Money)
    bid: Mapped[Decimal | None] = mapped_column(Money)
    ask: Mapped[Decimal | None] = mapped_column(Money)
    volume_24h: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    quote_volume_24h: Mapped[Decimal | None] = mapped_column(Money)
    open_24h: Mapped[Decimal | None] = mapped_column(Money)
    high_24h: Mapped[Decimal | None] = mapped_column(Money)
    low_24h: Mapped[Decimal | None] = mapped_column(Money)
    change_24h: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    change_percent_24h: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    market_cap: Mapped[Decimal | None] = mapped_column(Money)
    raw_data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # When the source produced the ticker (updated_at is when we stored it).
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OHLCVCandle(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "market_data_ohlcv"
    __table_args__ = (
        UniqueConstraint("symbol", "exchange", "timeframe", "open_time"),
        one_of("timeframe", Timeframe),
        *positive("open", "high", "low", "close"),
        *non_negative("volume", "quote_volume", "trade_count"),
        CheckConstraint(
            f"{num('low')} <= {num('open')} AND {num('low')} <= {num('close')}"
            f" AND {num('high')} >= {num('open')} AND {num('high')} >= {num('close')}",
            name="bar_consistent",
        ),
        CheckConstraint("close_time > open_time", name="close_after_open"),
    )

    exchange: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(32))
    timeframe: Mapped[str] = mapped_column(String(4))
    open_time: Mapped[datetime] = mapped_column(UTCDateTime)
    close_time: Mapped[datetime] = mapped_column(UTCDateTime)
    open: Mapped[Decimal] = mapped_column(Money)
    high: Mapped[Decimal] = mapped_column(Money)
    low: Mapped[Decimal] = mapped_column(Money)
    close: Mapped[Decimal] = mapped_column(Money)
    volume: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    quote_volume: Mapped[Decimal | None] = mapped_column(Money)
    trade_count: Mapped[int | None] = mapped_column(Integer)


class OrderBookSnapshot(UUIDPrimaryKey, Base):
    """Top levels of a book at one instant; levels are `[price, quantity]` decimal strings."""

    __tablename__ = "order_book_snapshots"
    __table_args__ = (
        *positive("best_bid", "best_ask", "mid"),
        Index("ix_order_book_snapshots_exchange_symbol_taken_at", "exchange", "symbol", "taken_at"),
    )

    exchange: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(32))
    bids: Mapped[list[list[str]]] = mapped_column(JSONType, default=list)
    asks: Mapped[list[list[str]]] = mapped_column(JSONType, default=list)
    # Null when that side of the book is empty.
    best_bid: Mapped[Decimal | None] = mapped_column(Money)
    best_ask: Mapped[Decimal | None] = mapped_column(Money)
    spread: Mapped[Decimal | None] = mapped_column(Money)
    mid: Mapped[Decimal | None] = mapped_column(Money)
    # The exchange's book update id, to order snapshots and spot gaps.
    sequence: Mapped[int | None] = mapped_column(BigInteger)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WatchlistItem(UUIDPrimaryKey, UserOwned, CreatedAt, Base):
    __tablename__ = "watchlist_items"
    __table_args__ = (UniqueConstraint("user_id", "symbol"),)

    symbol: Mapped[str] = mapped_column(String(32))
    notes: Mapped[str | None] = mapped_column(Text)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
