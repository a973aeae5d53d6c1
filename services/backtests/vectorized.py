"""The fast path: engine.py's contract (fills, costs, money, metrics) computed on arrays.

Per candle everything is numpy: the changes of the wanted position, the fill candles,
their prices, the equity curve and the exposure. Only the fills are visited one by one,
because each all-in entry spends what the previous exit left: that is a loop over the
trades, not the candles (a thousand-fold fewer on a crossover).

**Money as integers.** Prices and quantities are integers of 1e-8, cash an integer of
1e-16 (price x quantity), fees integers of 1e-8; the rates (fee, slippage, range share)
are exact fractions of Python integers (`Decimal.as_integer_ratio`). Every rounding is
integer floor division, so the results are exactly the reference's Decimals, not
merely close: float arithmetic would be off in the last digits and, after quantizing,
would differ wherever a value falls near a rounding boundary; integers never do, and
Python's are unbounded (a notional of 10 BTC at 100,000 is 10^22 units of 1e-16,
past int64). numba would not pay here: the per-candle work is already vectorised.

The equity mark, `float(cash) + float(quantity) * float(close)`, is evaluated with the
same float operations as the reference's (integer / 10^k is correctly rounded, as is
float(Decimal)), so the curves and hence the metrics are equal bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from services.backtests.engine import (
    UNITS,
    BacktestConfig,
    BacktestResult,
    CandleSeries,
    OpenPosition,
    Trade,
    measure,
    wanted_positions,
)

_BPS = 10_000
# Cash is counted in 1e-16: a fee or a price of 1e-8 is UNITS of it.
_CASH_UNITS = UNITS * UNITS


@dataclass(frozen=True, slots=True)
class _Rates:
    """The config's rates as integer fractions: rate = numerator / denominator."""

    fee_num: int
    fee_den: int
    slip_num: int
    slip_den: int
    range_num: int
    range_den: int
    step: int

    @classmethod
    def of(cls, config: BacktestConfig) -> _Rates:
        fee_num, fee_den = config.fee_bps.as_integer_ratio()
        slip_num, slip_den = config.slippage_bps.as_integer_ratio()
        range_num, range_den = config.slippage_range_share.as_integer_ratio()
        step_num, step_den = config.quantity_step.as_integer_ratio()
        return cls(
            fee_num,
            fee_den * _BPS,
            slip_num,
            slip_den * _BPS,
            range_num,
            range_den,
            step_num * UNITS // step_den,
        )

    def fee(self, notional: int) -> int:
        """Fee in 1e-8 of a notional in 1e-16, rounded half up."""
        denominator = self.fee_den * UNITS
        return (2 * notional * self.fee_num + denominator) // (2 * denominator)

    def lots(self, cash: int, price: int) -> int:
        """floor((cash - 0.5e-8) / (step * price * (1 + fee rate))), in steps."""
        spendable = cash - UNITS // 2
        return (spendable * self.fee_den) // (self.step * price * (self.fee_den + self.fee_num))


@dataclass(slots=True)
class _Fills:
    """What the loop over fills leaves: the candles where the ledger changed, with the
    cash and quantity after each, and the trades."""

    candles: list[int]
    cash: list[int]
    quantity: list[int]
    trades: list[Trade]
    entry: OpenPosition | None


def _fill_prices(
    series: CandleSeries,
    fills: npt.NDArray[np.intp],
    sides: list[int],
    rates: _Rates,
    config: BacktestConfig,
) -> list[int]:
    source = series.open if config.fill == "next_open" else series.close
    # Python integers in object arrays: exact, and vectorised in form if not in speed.
    base = source[fills].astype(object)
    spread = (series.high[fills] - series.low[fills]).astype(object)
    denominator = rates.slip_den * rates.range_den
    numerator = base * (rates.slip_num * rates.range_den) + spread * (
        rates.range_num * rates.slip_den
    )
    slip = -((-numerator) // denominator)
    buy = np.asarray(sides) == 1
    prices = np.where(buy, base + slip, np.maximum(base - slip, 1))
    return [int(p) for p in prices]


def _cash_units(cash: Decimal) -> int:
    # Exact: the config holds cash to 1e-8.
    numerator, denominator = cash.as_integer_ratio()
    return numerator * _CASH_UNITS // denominator


def _price(units: int) -> Decimal:
    return Decimal(f"{units}E-8")


def _walk(
    series: CandleSeries,
    fills: list[int],
    sides: list[int],
    prices: list[int],
    rates: _Rates,
    initial_cash: int,
) -> _Fills:
    cash = initial_cash
    held = 0
    entry: tuple[int, int, int, int] | None = None  # candle, price, quantity, fee
    out = _Fills([], [], [], [], None)
    for candle, side, price in zip(fills, sides, prices, strict=True):
        if side == 1:
            lots = rates.lots(cash, price)
            if lots <= 0:
                continue
            held = lots * rates.step
            fee = rates.fee(held * price)
            cash -= held * price + fee * UNITS
            entry = (candle, price, held, fee)
        else:
            if entry is None:
                continue
            proceeds = held * price
            fee = rates.fee(proceeds)
            cash += proceeds - fee * UNITS
            out.trades.append(_trade(series, entry, candle, price, fee))
            held, entry = 0, None
        out.candles.append(candle)
        out.cash.append(cash)
        out.quantity.append(held)
    if entry is not None:
        out.entry = OpenPosition(
            series.time(entry[0]), _price(entry[1]), _price(entry[2]), _price(entry[3])
        )
    return out


def _trade(
    series: CandleSeries, entry: tuple[int, int, int, int], candle: int, price: int, fee: int
) -> Trade:
    entered, entry_price, quantity, entry_fee = entry
    pnl = (quantity * price - fee * UNITS) - (quantity * entry_price + entry_fee * UNITS)
    return Trade(
        entry_time=series.time(entered),
        entry_price=_price(entry_price),
        exit_time=series.time(candle),
        exit_price=_price(price),
        quantity=_price(quantity),
        entry_fee=_price(entry_fee),
        exit_fee=_price(fee),
        pnl=Decimal(f"{pnl}E-16"),
    )


def run_vectorized(
    series: CandleSeries, wanted: npt.ArrayLike, config: BacktestConfig
) -> BacktestResult:
    """The same backtest as `engine.run_reference`, vectorised over the candles."""
    n = len(series)
    position = wanted_positions(wanted, n)
    previous = np.concatenate((np.zeros(1, dtype=np.int8), position[:-1]))
    # A change on candle i's close fills on candle i + 1; the last candle's cannot.
    changes = np.flatnonzero(position[:-1] != previous[:-1])
    fills = changes + 1
    sides = position[changes].tolist()
    rates = _Rates.of(config)
    initial = _cash_units(config.initial_cash)
    prices = _fill_prices(series, fills, sides, rates, config)
    walked = _walk(series, fills.tolist(), sides, prices, rates, initial)

    cash = np.array([initial / _CASH_UNITS] + [c / _CASH_UNITS for c in walked.cash])
    quantity = np.array([0.0] + [q / UNITS for q in walked.quantity])
    segment = np.searchsorted(np.asarray(walked.candles, dtype=np.intp), np.arange(n), "right")
    equity = cash[segment] + quantity[segment] * (series.close / UNITS)
    in_market = quantity[segment] > 0

    last_cash = walked.cash[-1] if walked.cash else initial
    last_quantity = walked.quantity[-1] if walked.quantity else 0
    last_close = int(series.close[-1]) if n else 0
    final_equity = Decimal(f"{last_cash + last_quantity * last_close}E-16")
    trades = tuple(walked.trades)
    return BacktestResult(
        trades=trades,
        open_position=walked.entry,
        equity=equity,
        in_market=in_market,
        final_cash=Decimal(f"{last_cash}E-16"),
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
