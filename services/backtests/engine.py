"""Backtests on candles: the contract both engines keep, and the reference engine.

`run_reference(series, wanted, config)` is a plain loop over the candles, one event at
a time, with every amount of the ledger a `Decimal`; vectorized.py is the fast path
with the same inputs and outputs, and its trades are identical to these.

**Inputs.** A `CandleSeries` (one symbol's closed candles, oldest first, prices on the
1e-8 grid), `wanted` (the position a strategy wants after each candle closes: 1 long,
0 flat, as services/backtests/signals.py gives it) and a `BacktestConfig`.

**Fills.** A change of the wanted position at candle i's close trades at candle i+1's
open (`fill="next_open"`, the default) or at its close (`"next_close"`), as one market
order. A change on the last candle has no candle to trade on and is not traded. Spot
and long-only: a buy spends the whole cash (all-in), a sell sells the whole position.

- Slippage, against the trader: `base * slippage_bps / 10^4 + slippage_range_share *
  (high - low)` of the fill candle, rounded up to 1e-8. A buy pays base + slippage, a
  sell gets base - slippage (never below 1e-8).
- Fee: `notional * fee_bps / 10^4` per fill, rounded half up to 1e-8 (as the paper
  exchange does), paid in cash.
- Quantity: `floor((cash - 0.5e-8) / (step * price * (1 + fee_bps / 10^4))) * step`:
  all the cash but the half of 1e-8 that rounding the fee can add, so notional plus fee
  never exceed the cash. A buy that affords no step does nothing, and the sell that
  would close it does nothing either.

**Money.** Exact: prices, quantities and fees are multiples of 1e-8, so notionals and
cash are multiples of 1e-16, and no amount is ever rounded but the fee and the slipped
price, by the rules above. Trades report prices, quantities and fees to 1e-8 and PnL
(net of both fees) to 1e-16. The equity curve is the mark at each close in float64,
`float(cash) + float(quantity) * float(close)`: an estimate for the statistics, like
them, written so both engines compute it bit for bit alike.

**Metrics** come from utils.performance and utils.risk_measures (docs/metrics.md), on
the equity curve, with periods per year from the candles' median spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, localcontext
from typing import Literal

import numpy as np
import numpy.typing as npt

from connectors.base import Candle
from services.backtests.signals import Ohlcv
from utils import performance, risk_measures
from utils.candles import to_utc

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

QUANTUM = Decimal("1e-8")
PNL_QUANTUM = Decimal("1e-16")
# Rounding a fee half up adds at most this to it: an all-in buy keeps it back.
FEE_ROUNDING = QUANTUM / 2
UNITS = 10**8
# Digits for the ledger's arithmetic: 10^15 of cash to 1e-16 needs 31; products of
# prices and quantities stay exact well within 50.
PRECISION = 50
MAX_CASH = Decimal(10) ** 15
MAX_BPS = Decimal(1000)
# Float prices are rounded to 1e-8 through price * 1e8, exact below 2^53 / 1e8.
MAX_FLOAT_PRICE = 1e7

FillTiming = Literal["next_open", "next_close"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidBacktestError(ValueError):
    """An input the engines refuse; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _on_grid(value: Decimal, quantum: Decimal) -> bool:
    with localcontext(prec=PRECISION):
        scaled = value / quantum
        return scaled == scaled.to_integral_value()


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    """Cash, costs and fill timing of one backtest (the rules are in the module doc)."""

    initial_cash: Decimal
    fee_bps: Decimal = Decimal(0)
    slippage_bps: Decimal = Decimal(0)
    slippage_range_share: Decimal = Decimal(0)
    quantity_step: Decimal = QUANTUM
    fill: FillTiming = "next_open"

    def __post_init__(self) -> None:
        cash = self.initial_cash
        if not (cash.is_finite() and 0 < cash <= MAX_CASH and _on_grid(cash, QUANTUM)):
            raise InvalidBacktestError(
                "initial_cash", f"must be positive, at most {MAX_CASH}, to 1e-8"
            )
        for name in ("fee_bps", "slippage_bps"):
            bps: Decimal = getattr(self, name)
            if not (bps.is_finite() and 0 <= bps <= MAX_BPS):
                raise InvalidBacktestError(name, f"must be between 0 and {MAX_BPS}")
        share = self.slippage_range_share
        if not (share.is_finite() and 0 <= share <= 1):
            raise InvalidBacktestError("slippage_range_share", "must be between 0 and 1")
        step = self.quantity_step
        if not (step.is_finite() and step > 0 and _on_grid(step, QUANTUM)):
            raise InvalidBacktestError("quantity_step", "must be a positive multiple of 1e-8")
        if self.fill not in ("next_open", "next_close"):
            raise InvalidBacktestError("fill", "must be next_open or next_close")


@dataclass(frozen=True, slots=True)
class CandleSeries:
    """One symbol's closed candles, oldest first: open times (UTC, datetime64[us]),
    prices as integers of 1e-8, volumes as floats."""

    open_time: npt.NDArray[np.datetime64]
    open: IntArray
    high: IntArray
    low: IntArray
    close: IntArray
    volume: FloatArray

    def __post_init__(self) -> None:
        n = len(self.open_time)
        for name in ("open", "high", "low", "close", "volume"):
            values = getattr(self, name)
            if values.ndim != 1 or len(values) != n:
                raise InvalidBacktestError(name, f"must be one-dimensional with {n} values")
        if n > 1 and not bool(np.all(np.diff(self.open_time) > np.timedelta64(0, "us"))):
            raise InvalidBacktestError("open_time", "must be strictly increasing")
        bad = ~(
            (self.low > 0)
            & (self.low <= self.open)
            & (self.low <= self.close)
            & (self.high >= self.open)
            & (self.high >= self.close)
        )
        if bool(bad.any()):
            index = int(np.argmax(bad))
            raise InvalidBacktestError(
                "candles",
                f"candle {index}: prices must be positive, with low <= open, close <= high",
            )

    @classmethod
    def from_candles(cls, candles: Sequence[Candle]) -> CandleSeries:
        """From the market's candles, prices rounded to 1e-8 (stored prices have 8
        decimals, so this changes nothing read from the database)."""
        times = np.array(
            [to_utc(c.open_time).replace(tzinfo=None) for c in candles], dtype="datetime64[us]"
        )
        with localcontext(prec=PRECISION):

            def units(price: Decimal) -> int:
                return int((price * UNITS).to_integral_value(ROUND_HALF_EVEN))

            open_, high, low, close = (
                np.array([units(getattr(c, name)) for c in candles], dtype=np.int64)
                for name in ("open", "high", "low", "close")
            )
        volume = np.array([float(c.volume) for c in candles], dtype=np.float64)
        return cls(times, open_, high, low, close, volume)

    @classmethod
    def from_prices(
        cls,
        open_time: npt.ArrayLike,
        open: npt.ArrayLike,
        high: npt.ArrayLike,
        low: npt.ArrayLike,
        close: npt.ArrayLike,
        volume: npt.ArrayLike,
    ) -> CandleSeries:
        """From float prices (rounded to 1e-8, below 1e7) and UTC datetime64 times."""
        prices = [np.asarray(p, dtype=np.float64) for p in (open, high, low, close)]
        if any(bool(np.any(np.abs(p) >= MAX_FLOAT_PRICE)) for p in prices):
            raise InvalidBacktestError("prices", f"float prices must be below {MAX_FLOAT_PRICE}")
        open_, high_, low_, close_ = (np.rint(p * UNITS).astype(np.int64) for p in prices)
        times = np.asarray(open_time, dtype="datetime64[us]")
        return cls(times, open_, high_, low_, close_, np.asarray(volume, dtype=np.float64))

    def __len__(self) -> int:
        return len(self.open_time)

    def head(self, count: int) -> CandleSeries:
        """The first `count` candles."""
        return CandleSeries(
            self.open_time[:count],
            self.open[:count],
            self.high[:count],
            self.low[:count],
            self.close[:count],
            self.volume[:count],
        )

    def ohlcv(self) -> Ohlcv:
        """The float series the strategies' signals read."""
        return Ohlcv(
            self.open / UNITS, self.high / UNITS, self.low / UNITS, self.close / UNITS, self.volume
        )

    def time(self, index: int) -> datetime:
        """Candle `index`'s open time, as an aware UTC datetime."""
        micros = int(self.open_time[index].astype("datetime64[us]").astype(np.int64))
        return _EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True, slots=True)
class OpenPosition:
    """The position still held after the last candle (not a trade: it has no exit)."""

    entry_time: datetime
    entry_price: Decimal
    quantity: Decimal
    entry_fee: Decimal


@dataclass(frozen=True, slots=True)
class Trade:
    """One round trip: bought at its entry, sold at its exit. `pnl` is the sale's
    proceeds less its fee, minus the purchase's notional and fee."""

    entry_time: datetime
    entry_price: Decimal
    exit_time: datetime
    exit_price: Decimal
    quantity: Decimal
    entry_fee: Decimal
    exit_fee: Decimal
    pnl: Decimal

    @property
    def fee(self) -> Decimal:
        return self.entry_fee + self.exit_fee


@dataclass(frozen=True, slots=True)
class BacktestMetrics:
    """The run's statistics; None where undefined on the data (docs/metrics.md)."""

    total_return: Decimal | None
    cagr: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float | None
    win_rate: Decimal | None
    profit_factor: Decimal | None
    exposure: float | None
    trades: int


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """Closed trades, the position left open, the equity marked at each close and
    whether a position was held there, the ledger's end and the metrics."""

    trades: tuple[Trade, ...]
    open_position: OpenPosition | None
    equity: FloatArray
    in_market: BoolArray
    final_cash: Decimal
    final_equity: Decimal
    metrics: BacktestMetrics


def wanted_positions(wanted: npt.ArrayLike, length: int) -> npt.NDArray[np.int8]:
    """The wanted positions as int8, checked: one per candle, each 0 or 1."""
    values = np.asarray(wanted)
    if values.shape != (length,):
        raise InvalidBacktestError("wanted", f"must hold one position per candle ({length})")
    if not bool(np.all((values == 0) | (values == 1))):
        raise InvalidBacktestError("wanted", "positions must be 0 (flat) or 1 (long)")
    return values.astype(np.int8)


def periods_per_year(open_time: npt.NDArray[np.datetime64]) -> float | None:
    """`performance.periods_per_year` of the candles (a year over their median spacing),
    computed on the array: a million datetimes would not fit the time budget."""
    if len(open_time) < 2:
        return None
    gaps = np.diff(open_time).astype("timedelta64[us]").astype(np.int64)
    spacing = float(np.median(gaps)) / 1e6
    return performance.SECONDS_PER_YEAR / spacing if spacing > 0 else None


def measure(
    open_time: npt.NDArray[np.datetime64],
    equity: FloatArray,
    in_market: BoolArray,
    trades: Sequence[Trade],
    *,
    initial_cash: Decimal,
    final_equity: Decimal,
) -> BacktestMetrics:
    """The metrics of a run, from the one analytics implementation."""
    total = performance.total_return([initial_cash, final_equity])
    periods = periods_per_year(open_time)
    returns = np.empty(0)
    if len(equity) >= 2 and bool(np.all(equity > 0)):
        returns = risk_measures.returns_from_prices(equity)
    results = [t.pnl for t in trades]
    return BacktestMetrics(
        total_return=total,
        cagr=performance.cagr(total, len(equity) - 1, periods),
        sharpe=None if periods is None else performance.sharpe_ratio(returns, periods),
        sortino=None if periods is None else performance.sortino_ratio(returns, periods),
        max_drawdown=risk_measures.max_drawdown_from_returns(returns),
        win_rate=performance.win_rate(sum(1 for r in results if r > 0), len(results)),
        profit_factor=performance.profit_factor(results),
        exposure=float(np.mean(in_market)) if len(in_market) else None,
        trades=len(trades),
    )


class _Ledger:
    """The reference's cash and position, in Decimal, moved one fill at a time."""

    def __init__(self, config: BacktestConfig) -> None:
        self.config = config
        self.cash = config.initial_cash
        self.quantity = Decimal(0)
        self.entry: OpenPosition | None = None
        self.trades: list[Trade] = []

    def slippage(self, base: Decimal, high: Decimal, low: Decimal) -> Decimal:
        config = self.config
        raw = base * config.slippage_bps / 10_000 + config.slippage_range_share * (high - low)
        return raw.quantize(QUANTUM, rounding=ROUND_CEILING)

    def fee(self, notional: Decimal) -> Decimal:
        return (notional * self.config.fee_bps / 10_000).quantize(QUANTUM, rounding=ROUND_HALF_UP)

    def buy(self, time: datetime, base: Decimal, high: Decimal, low: Decimal) -> None:
        price = base + self.slippage(base, high, low)
        step = self.config.quantity_step
        lots = (self.cash - FEE_ROUNDING) // (step * price * (1 + self.config.fee_bps / 10_000))
        if lots <= 0:
            return
        quantity = lots * step
        fee = self.fee(quantity * price)
        self.cash -= quantity * price + fee
        self.quantity = quantity
        self.entry = OpenPosition(
            time, price.quantize(QUANTUM), quantity.quantize(QUANTUM), fee.quantize(QUANTUM)
        )

    def sell(self, time: datetime, base: Decimal, high: Decimal, low: Decimal) -> None:
        entry = self.entry
        if entry is None:
            return
        price = max(base - self.slippage(base, high, low), QUANTUM)
        proceeds = self.quantity * price
        fee = self.fee(proceeds)
        self.cash += proceeds - fee
        cost = entry.quantity * entry.entry_price + entry.entry_fee
        self.trades.append(
            Trade(
                entry_time=entry.entry_time,
                entry_price=entry.entry_price,
                exit_time=time,
                exit_price=price.quantize(QUANTUM),
                quantity=entry.quantity,
                entry_fee=entry.entry_fee,
                exit_fee=fee.quantize(QUANTUM),
                pnl=(proceeds - fee - cost).quantize(PNL_QUANTUM),
            )
        )
        self.quantity = Decimal(0)
        self.entry = None


def _price(units: int) -> Decimal:
    return Decimal(units).scaleb(-8)


def run_reference(
    series: CandleSeries, wanted: npt.ArrayLike, config: BacktestConfig
) -> BacktestResult:
    """The reference: each candle in turn fills the order the previous close decided,
    then marks the equity at its close, then reads the wanted position."""
    n = len(series)
    position = wanted_positions(wanted, n).tolist()
    opens, highs, lows = series.open.tolist(), series.high.tolist(), series.low.tolist()
    closes = series.close.tolist()
    bases = opens if config.fill == "next_open" else closes
    equity = np.empty(n)
    in_market = np.zeros(n, dtype=np.bool_)
    with localcontext(prec=PRECISION):
        ledger = _Ledger(config)
        pending: int | None = None
        previous = 0
        for i in range(n):
            if pending is not None:
                fill = ledger.buy if pending == 1 else ledger.sell
                fill(series.time(i), _price(bases[i]), _price(highs[i]), _price(lows[i]))
                pending = None
            close = _price(closes[i])
            equity[i] = float(ledger.cash) + float(ledger.quantity) * float(close)
            in_market[i] = ledger.quantity > 0
            if position[i] != previous and i + 1 < n:
                pending = position[i]
            previous = position[i]
        last_close = _price(closes[-1]) if n else Decimal(0)
        final_equity = (ledger.cash + ledger.quantity * last_close).quantize(PNL_QUANTUM)
        final_cash = ledger.cash.quantize(PNL_QUANTUM)
    trades = tuple(ledger.trades)
    return BacktestResult(
        trades=trades,
        open_position=ledger.entry,
        equity=equity,
        in_market=in_market,
        final_cash=final_cash,
        final_equity=final_equity,
        metrics=measure(
            series.open_time,
            equity,
            in_market,
            trades,
            initial_cash=config.initial_cash,
            final_equity=final_equity,
        ),
    )
