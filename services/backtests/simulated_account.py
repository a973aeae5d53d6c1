"""The paper account of an agent backtest: cash and positions in Decimal, moved one
fill at a time with the paper exchange's fee rounding (`fee_for`).

Spot, long only. A buy pays notional + fee out of cash and adds to the position at its
price (the cost basis is the notional, fees apart, as the paper exchange keeps it); a
sell takes the quantity out at the average cost and pays proceeds - fee into cash.

**The invariant** (as the paper exchange's, docs/architecture.md "Money"), exact:
cash + Σ cost basis = initial cash + realized PnL - fees, where realized PnL is each
sale's proceeds less the cost basis it took out. `reconciles()` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, Decimal, localcontext

from models.enums import OrderSide
from services.backtests.engine import PNL_QUANTUM, QUANTUM, Trade
from services.paper_trading.matching import MONEY_CONTEXT, fee_for

_ZERO = Decimal(0)


@dataclass(slots=True)
class Lot:
    """What is held of one symbol: quantity, cost basis (notional paid, no fees), the
    buys' fees still carried, and when the position was opened."""

    quantity: Decimal
    cost: Decimal
    fees: Decimal
    opened_at: datetime

    @property
    def average_price(self) -> Decimal:
        with localcontext(MONEY_CONTEXT):
            return (self.cost / self.quantity).quantize(QUANTUM) if self.quantity else _ZERO


@dataclass(frozen=True, slots=True)
class Fill:
    time: datetime
    decided_at: datetime
    symbol: str
    side: OrderSide
    quantity: Decimal
    price: Decimal
    fee: Decimal


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """A sell and what it closed, as a strategy backtest's `Trade` (entry at the lot's
    average cost, with its share of the buys' fees), and its symbol."""

    symbol: str
    trade: Trade


@dataclass(slots=True)
class SimulatedAccount:
    initial_cash: Decimal
    cash: Decimal = _ZERO
    lots: dict[str, Lot] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    trades: list[ClosedTrade] = field(default_factory=list)
    fees: Decimal = _ZERO
    realized: Decimal = _ZERO

    def __post_init__(self) -> None:
        self.cash = self.initial_cash

    def equity(self, marks: dict[str, Decimal]) -> Decimal:
        """Cash plus each position at its mark (its average cost where none)."""
        with localcontext(MONEY_CONTEXT):
            value = sum(
                (lot.quantity * marks.get(symbol, lot.average_price))
                for symbol, lot in self.lots.items()
            )
            return self.cash + value

    def held(self, symbol: str) -> Decimal:
        lot = self.lots.get(symbol)
        return lot.quantity if lot is not None else _ZERO

    def affordable(self, price: Decimal, fee_bps: Decimal, step: Decimal) -> Decimal:
        """The most of `step`s the cash buys at `price` with its fee (the engine's
        all-in rule: half of 1e-8 kept back for the fee's rounding)."""
        with localcontext(MONEY_CONTEXT):
            per_step = step * price * (1 + fee_bps / 10_000)
            if per_step <= 0 or self.cash <= QUANTUM / 2:
                return _ZERO
            lots = ((self.cash - QUANTUM / 2) / per_step).to_integral_value(rounding=ROUND_DOWN)
            return lots * step

    def buy(
        self,
        symbol: str,
        quantity: Decimal,
        price: Decimal,
        fee_bps: Decimal,
        *,
        time: datetime,
        decided_at: datetime,
    ) -> Fill:
        with localcontext(MONEY_CONTEXT):
            notional = quantity * price
            fee = fee_for(notional, fee_bps)
            if notional + fee > self.cash:
                raise ValueError("a simulated buy beyond the cash")
            self.cash -= notional + fee
            self.fees += fee
            lot = self.lots.get(symbol)
            if lot is None:
                self.lots[symbol] = Lot(quantity, notional, fee, time)
            else:
                lot.quantity += quantity
                lot.cost += notional
                lot.fees += fee
        fill = Fill(time, decided_at, symbol, OrderSide.BUY, quantity, price, fee)
        self.fills.append(fill)
        return fill

    def sell(
        self,
        symbol: str,
        quantity: Decimal,
        price: Decimal,
        fee_bps: Decimal,
        *,
        time: datetime,
        decided_at: datetime,
    ) -> Fill:
        lot = self.lots.get(symbol)
        if lot is None or quantity > lot.quantity:
            raise ValueError("a simulated sell beyond the position")
        with localcontext(MONEY_CONTEXT):
            proceeds = quantity * price
            fee = fee_for(proceeds, fee_bps)
            whole = quantity == lot.quantity
            # Kept on the ledger's grid, so every sum after it stays exact.
            cost = lot.cost if whole else (lot.cost * quantity / lot.quantity).quantize(PNL_QUANTUM)
            entry_fee = (
                lot.fees if whole else (lot.fees * quantity / lot.quantity).quantize(QUANTUM)
            )
            self.cash += proceeds - fee
            self.fees += fee
            self.realized += proceeds - cost
            trade = Trade(
                entry_time=lot.opened_at,
                entry_price=lot.average_price,
                exit_time=time,
                exit_price=price,
                quantity=quantity,
                entry_fee=entry_fee,
                exit_fee=fee,
                pnl=(proceeds - fee - cost - entry_fee).quantize(PNL_QUANTUM),
            )
            self.trades.append(ClosedTrade(symbol, trade))
            if whole:
                del self.lots[symbol]
            else:
                lot.quantity -= quantity
                lot.cost -= cost
                lot.fees -= entry_fee
        fill = Fill(time, decided_at, symbol, OrderSide.SELL, quantity, price, fee)
        self.fills.append(fill)
        return fill

    def reconciles(self) -> bool:
        """cash + Σ cost basis == initial + realized - fees, and cash is what the fills
        moved: initial - Σ buys' notional and fee + Σ sells' proceeds less fee."""
        with localcontext(MONEY_CONTEXT):
            basis = sum((lot.cost for lot in self.lots.values()), _ZERO)
            ledger = self.cash + basis == self.initial_cash + self.realized - self.fees
            moved = self.initial_cash
            for f in self.fills:
                notional = f.quantity * f.price
                moved += -(notional + f.fee) if f.side is OrderSide.BUY else notional - f.fee
            return ledger and moved == self.cash
