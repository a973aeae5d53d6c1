"""The simulated exchange's default universe: per symbol its trading rules and the
parameters of its simulated market.

Money and quantities (start price, spread band, volume, book depth) are `Decimal`; the
random process's own parameters (volatility, jump and trade rates) are floats, because
they only shape a random draw and never reach a price without rounding to the tick.

Choices worth knowing:

- Prices are levels of early 2025; volatilities are typical annualised realised ones.
- Equities trade around the clock here (no sessions, no overnight gap); their annual
  volatility is spread over the calendar year, like crypto's.
- Equities allow fractional shares to 0.0001 with a 1 USD minimum notional and no
  commission (as Alpaca); crypto uses venue-like increments (BTC 0.00001), a 10 USD
  minimum notional and the default 10/20 bps maker/taker fees.
- `daily_volume` is one venue's, in base units; `depth.touch_notional` is the quote value
  resting at the best level, each further level holding `depth.growth` times more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from connectors.base import AssetClass, PairRules


@dataclass(frozen=True, slots=True)
class DepthProfile:
    """Shape of the simulated book: finite, thicker away from the touch."""

    levels: int
    touch_notional: Decimal
    growth: Decimal
    level_spacing_bps: Decimal

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ValueError("a book needs at least one level a side")
        if self.touch_notional <= 0 or self.growth < 1 or self.level_spacing_bps <= 0:
            raise ValueError("touch_notional and level_spacing_bps must be > 0, growth >= 1")


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """One simulated pair: its rules and how its market moves."""

    rules: PairRules
    start_price: Decimal
    annual_volatility: float
    spread_bps: Decimal
    min_spread_bps: Decimal
    max_spread_bps: Decimal
    daily_volume: Decimal
    trades_per_second: float
    depth: DepthProfile
    jumps_per_day: float = 0.0
    jump_volatility: float = 0.0
    annual_drift: float = 0.0

    def __post_init__(self) -> None:
        if self.start_price <= 0 or self.start_price % self.rules.tick_size:
            raise ValueError(f"{self.symbol}: start price must be > 0 and on the tick")
        if not 0 < self.min_spread_bps <= self.spread_bps <= self.max_spread_bps:
            raise ValueError(f"{self.symbol}: need 0 < min_spread <= spread <= max_spread")
        if self.annual_volatility < 0 or self.jump_volatility < 0 or self.jumps_per_day < 0:
            raise ValueError(f"{self.symbol}: volatilities and jump rate must be >= 0")
        if self.daily_volume <= 0 or self.trades_per_second <= 0:
            raise ValueError(f"{self.symbol}: daily volume and trade rate must be > 0")

    @property
    def symbol(self) -> str:
        return self.rules.symbol


# One row of the table below, in its column order.
_Row = tuple[str, AssetClass, str, float, str, str, str, str, str, float, str, str]


def _spec(row: _Row) -> SymbolSpec:
    symbol, asset_class, price, vol, tick, step, max_qty, spread_bps = row[:8]
    daily_volume, trades_per_second, touch_notional, spacing_bps = row[8:]
    base, quote = symbol.split("/")
    crypto = asset_class is AssetClass.CRYPTO
    spread = Decimal(spread_bps)
    return SymbolSpec(
        rules=PairRules(
            symbol=symbol,
            base_asset=base,
            quote_asset=quote,
            tick_size=Decimal(tick),
            step_size=Decimal(step),
            min_quantity=Decimal(step),
            max_quantity=Decimal(max_qty),
            min_notional=Decimal(10 if crypto else 1),
            asset_class=asset_class,
            maker_fee_bps=Decimal(10 if crypto else 0),
            taker_fee_bps=Decimal(20 if crypto else 0),
        ),
        start_price=Decimal(price),
        annual_volatility=vol,
        # The spread wanders (mean-reverting) between 0.4x and 4x its typical width.
        spread_bps=spread,
        min_spread_bps=spread * Decimal("0.4"),
        max_spread_bps=spread * 4,
        daily_volume=Decimal(daily_volume),
        trades_per_second=trades_per_second,
        depth=DepthProfile(
            levels=20,
            touch_notional=Decimal(touch_notional),
            growth=Decimal("1.15"),
            level_spacing_bps=Decimal(spacing_bps),
        ),
        # Crypto gaps more often and harder than large-cap equities.
        jumps_per_day=4.0 if crypto else 1.0,
        jump_volatility=0.006 if crypto else 0.004,
    )


_C = AssetClass.CRYPTO
_E = AssetClass.EQUITY

# fmt: off
_TABLE: tuple[_Row, ...] = (
    # symbol     class start      vol   tick       step       max qty     spread
    #   daily volume   trades/s  touch USD  level spacing bps
    ("BTC/USD",  _C, "97000.00", 0.55, "0.01",    "0.00001", "1000",     "0.5",
        "15000",       6,        "50000",   "1"),
    ("ETH/USD",  _C, "3400.00",  0.70, "0.01",    "0.0001",  "10000",    "1",
        "200000",      5,        "40000",   "1.5"),
    ("SOL/USD",  _C, "190.00",   0.90, "0.01",    "0.001",   "100000",   "2",
        "2500000",     4,        "25000",   "2"),
    ("XRP/USD",  _C, "2.3000",   0.95, "0.0001",  "0.1",     "10000000", "3",
        "400000000",   3,        "20000",   "3"),
    ("DOGE/USD", _C, "0.32000",  1.00, "0.00001", "1",       "50000000", "4",
        "1500000000",  3,        "15000",   "4"),
    ("ADA/USD",  _C, "0.9500",   0.90, "0.0001",  "0.1",     "10000000", "5",
        "300000000",   2,        "15000",   "4"),
    ("AVAX/USD", _C, "35.00",    0.95, "0.01",    "0.01",    "1000000",  "4",
        "4000000",     2,        "15000",   "3"),
    ("LINK/USD", _C, "20.000",   0.85, "0.001",   "0.01",    "1000000",  "4",
        "6000000",     2,        "15000",   "3"),
    ("AAPL/USD", _E, "230.00",   0.25, "0.01",    "0.0001",  "1000000",  "1",
        "50000000",    20,       "100000",  "1"),
    ("MSFT/USD", _E, "420.00",   0.24, "0.01",    "0.0001",  "1000000",  "1",
        "20000000",    15,       "100000",  "1"),
    ("NVDA/USD", _E, "135.00",   0.50, "0.01",    "0.0001",  "1000000",  "1",
        "250000000",   40,       "150000",  "1"),
    ("SPY/USD",  _E, "590.00",   0.15, "0.01",    "0.0001",  "1000000",  "0.5",
        "60000000",    25,       "200000",  "0.5"),
)
# fmt: on

DEFAULT_UNIVERSE: Mapping[str, SymbolSpec] = MappingProxyType(
    {spec.symbol: spec for spec in map(_spec, _TABLE)}
)
