"""The connector interface: market data and order execution behind one shape.

Required methods are abstract; optional ones raise `UnsupportedOperationError` and a
connector says which it has in `capabilities`. Connectors never import the ORM,
services or FastAPI. Vendor errors are translated into the small tree below with
`raise ... from e`; only `TemporaryExchangeError` is worth retrying.

The data types are slotted dataclasses, not pydantic models: they sit on the hot path
(every tick, every fill) and carry `Decimal` only.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar


class ExchangeError(Exception):
    """Base of what a connector raises."""


class TemporaryExchangeError(ExchangeError):
    """Network trouble, rate limit, maintenance: the same call may succeed later."""


class OrderRejectedError(ExchangeError):
    """The venue refused the order; retrying the same order will not help."""


class UnknownSymbolError(ExchangeError):
    """The venue does not list this symbol."""


class UnsupportedOperationError(ExchangeError):
    """The connector does not offer this optional operation."""


class Capability(StrEnum):
    TICKER = "ticker"
    ORDER_BOOK = "order_book"
    CANDLES = "candles"
    TRADING_RULES = "trading_rules"
    PLACE_ORDERS = "place_orders"
    STREAM_TICKS = "stream_ticks"
    REPLAY = "replay"


class AssetClass(StrEnum):
    CRYPTO = "crypto"
    EQUITY = "equity"


@dataclass(frozen=True, slots=True)
class PairRules:
    """A pair's trading rules: price to `tick_size`, quantity to `step_size`."""

    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_quantity: Decimal
    max_quantity: Decimal
    min_notional: Decimal
    asset_class: AssetClass = AssetClass.CRYPTO
    # The venue's fee schedule in basis points of notional; None when it does not say
    # (the paper exchange then charges PAPER_MAKER_FEE_BPS / PAPER_TAKER_FEE_BPS).
    maker_fee_bps: Decimal | None = None
    taker_fee_bps: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Ticker:
    symbol: str
    bid: Decimal
    ask: Decimal
    last: Decimal
    volume_24h: Decimal
    change_24h: Decimal
    change_percent_24h: Decimal
    timestamp: datetime

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2

    @property
    def spread(self) -> Decimal:
        return self.ask - self.bid


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: Decimal
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class OrderBook:
    """Bids best (highest) first, asks best (lowest) first."""

    symbol: str
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    timestamp: datetime

    @property
    def best_bid(self) -> Decimal | None:
        return self.bids[0].price if self.bids else None

    @property
    def best_ask(self) -> Decimal | None:
        return self.asks[0].price if self.asks else None


@dataclass(frozen=True, slots=True)
class Candle:
    symbol: str
    timeframe: str
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int = 0


@dataclass(frozen=True, slots=True)
class Tick:
    """One market update: the ticker and the book that stands after it."""

    ticker: Ticker
    book: OrderBook
    trade_volume: Decimal = field(default=Decimal(0))


class MarketDataConnector(abc.ABC):
    """What the market data service needs from a venue."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open sessions, load the venue's symbols and rules."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every resource; safe to call twice."""

    @abc.abstractmethod
    async def trading_rules(self) -> list[PairRules]:
        """Every listed pair with its rules."""

    @abc.abstractmethod
    async def fetch_ticker(self, symbol: str) -> Ticker:
        """Latest ticker; raises UnknownSymbolError for an unlisted symbol."""

    @abc.abstractmethod
    async def fetch_order_book(self, symbol: str, *, depth: int = 20) -> OrderBook:
        """Current book, `depth` levels a side."""

    async def fetch_candles(
        self,
        symbol: str,
        *,
        timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 500,
    ) -> list[Candle]:
        """Historical candles, oldest first (optional capability CANDLES)."""
        raise UnsupportedOperationError(f"{self.name} does not serve candles")
