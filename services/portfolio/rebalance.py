"""From holdings and target weights to the market orders that reach them. Pure, `Decimal`.

The rules, chosen so that every planned order can be placed as planned:

- Weights are fractions of equity (cash + holdings at the mark); what they leave
  unallocated stays cash. A held symbol without a target is sold to zero.
- Each symbol's target quantity is `weight * equity / mark`; the order is the difference.
- Sells come first, sized to what is free (an open order may hold part of a position);
  a zero weight sells everything free. Their proceeds are estimated by walking the bids
  of the book the exchange will trade them against, net of the pair's taker fee.
- Buys are priced by walking the asks the same way (the average price the quantity
  would pay, as execution walks the book), plus the pair's taker fee. When together they
  cost more than the free cash plus the sells' proceeds, every buy is scaled down by the
  same factor; a smaller quantity never pays a higher average, so the plan never asks
  for more cash than it will have. Beyond the book's last level, a quantity is priced
  at that level.
- Quantities are rounded down to the pair's step and capped at its maximum; an order
  that rounds to nothing or falls below the pair's minimum quantity or notional is kept
  in the plan as skipped, with the rule it breaks.

The planner's output is its own dataclasses (`RebalancePlan`, `Allocation`,
`PlannedOrder`); the service shapes them, and what placing them did, for the API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from connectors.base import BookLevel, PairRules
from models.enums import OrderSide
from services.paper_trading.rules import RuleCode, round_down_to_step

_ZERO = Decimal(0)
_BPS = Decimal(10000)


@dataclass(frozen=True, slots=True)
class Holding:
    """A position: `quantity` is valued, `free` can be sold now."""

    quantity: Decimal
    free: Decimal


@dataclass(frozen=True, slots=True)
class Quote:
    """The mark values the holding; a sell walks `bids`, a buy `asks` (best first);
    without levels, the touch (`bid`, `ask`) prices the whole quantity."""

    mark: Decimal
    bid: Decimal
    ask: Decimal
    bids: tuple[BookLevel, ...] = ()
    asks: tuple[BookLevel, ...] = ()

    def price(self, side: OrderSide, quantity: Decimal) -> Decimal:
        """The average price `quantity` would trade at, walking the book from the touch."""
        levels = self.asks if side is OrderSide.BUY else self.bids
        touch = self.ask if side is OrderSide.BUY else self.bid
        if not levels or quantity <= 0:
            return touch
        left, cost, price = quantity, _ZERO, touch
        for level in levels:
            if level.quantity <= 0:
                continue
            take = min(left, level.quantity)
            price = level.price
            cost += take * price
            left -= take
            if not left:
                break
        cost += left * price
        return cost / quantity


@dataclass(frozen=True, slots=True)
class Allocation:
    symbol: str
    mark: Decimal
    current_quantity: Decimal
    current_value: Decimal
    current_weight: Decimal
    target_weight: Decimal
    target_value: Decimal
    target_quantity: Decimal


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    symbol: str
    side: OrderSide
    quantity: Decimal
    price: Decimal
    notional: Decimal
    skip_code: RuleCode | None = None
    skip_reason: str | None = None

    @property
    def skipped(self) -> bool:
        return self.skip_code is not None


@dataclass(frozen=True, slots=True)
class RebalancePlan:
    equity: Decimal
    cash: Decimal
    allocations: tuple[Allocation, ...]
    # Sells first, then buys, each by symbol.
    orders: tuple[PlannedOrder, ...]


def plan_rebalance(
    *,
    cash: Decimal,
    free_cash: Decimal,
    holdings: Mapping[str, Holding],
    targets: Mapping[str, Decimal],
    quotes: Mapping[str, Quote],
    rules: Mapping[str, PairRules],
    fee_bps: Mapping[str, Decimal],
) -> RebalancePlan:
    """The orders that move `holdings` to `targets` (weights, sum <= 1). Every symbol
    held or targeted needs a quote with a positive mark, its pair's rules and its taker
    fee rate (`fee_bps`, basis points)."""
    if any(w < 0 for w in targets.values()) or sum(targets.values(), _ZERO) > 1:
        raise ValueError("target weights must be >= 0 and sum to at most 1")
    symbols = sorted(set(targets) | {s for s, h in holdings.items() if h.quantity > 0})
    empty = Holding(_ZERO, _ZERO)
    equity = cash + sum(
        (h.quantity * quotes[s].mark for s, h in holdings.items() if h.quantity > 0), _ZERO
    )
    if equity <= 0:
        raise ValueError("nothing to rebalance: equity is not positive")
    fee = {s: fee_bps[s] / _BPS for s in symbols}

    allocations = [
        _allocate(s, holdings.get(s, empty), targets.get(s, _ZERO), quotes[s].mark, equity)
        for s in symbols
    ]
    sells: list[PlannedOrder] = []
    wanted_buys: dict[str, Decimal] = {}
    for allocation in allocations:
        delta = allocation.target_quantity - allocation.current_quantity
        if delta < 0:
            free = holdings.get(allocation.symbol, empty).free
            quantity = free if allocation.target_weight == 0 else min(-delta, free)
            sell = _order(allocation.symbol, OrderSide.SELL, quantity, quotes, rules)
            if sell is not None:
                sells.append(sell)
        elif delta > 0:
            wanted_buys[allocation.symbol] = delta

    proceeds = sum((o.notional * (1 - fee[o.symbol]) for o in sells if not o.skipped), _ZERO)
    budget = free_cash + proceeds
    cost = sum(
        (q * quotes[s].price(OrderSide.BUY, q) * (1 + fee[s]) for s, q in wanted_buys.items()),
        _ZERO,
    )
    scale = budget / cost if cost > budget else Decimal(1)
    buys = [
        order
        for s, q in wanted_buys.items()
        if (order := _order(s, OrderSide.BUY, q * scale, quotes, rules)) is not None
    ]
    return RebalancePlan(equity, cash, tuple(allocations), (*sells, *buys))


def _allocate(
    symbol: str, holding: Holding, weight: Decimal, mark: Decimal, equity: Decimal
) -> Allocation:
    if mark <= 0:
        raise ValueError(f"{symbol} has no positive mark")
    value = holding.quantity * mark
    target_value = weight * equity
    return Allocation(
        symbol=symbol,
        mark=mark,
        current_quantity=holding.quantity,
        current_value=value,
        current_weight=value / equity,
        target_weight=weight,
        target_value=target_value,
        target_quantity=target_value / mark,
    )


def _order(
    symbol: str,
    side: OrderSide,
    wanted: Decimal,
    quotes: Mapping[str, Quote],
    rules: Mapping[str, PairRules],
) -> PlannedOrder | None:
    """The order for `wanted` (> 0) on the pair's grid, or a skipped one saying why;
    None when there is nothing to trade."""
    if wanted <= 0:
        return None
    pair = rules[symbol]
    quantity = round_down_to_step(min(wanted, pair.max_quantity), pair.step_size)
    price = quotes[symbol].price(side, quantity)
    notional = quantity * price
    skip: tuple[RuleCode, str] | None = None
    if quantity <= 0:
        skip = RuleCode.QUANTITY_BELOW_STEP, f"{wanted} is below the step size {pair.step_size}"
    elif quantity < pair.min_quantity:
        skip = (
            RuleCode.QUANTITY_BELOW_MINIMUM,
            f"quantity {quantity} is below the minimum of {pair.min_quantity}",
        )
    elif notional < pair.min_notional:
        skip = (
            RuleCode.NOTIONAL_BELOW_MINIMUM,
            f"order value {notional} is below the minimum of {pair.min_notional}",
        )
    if skip is None:
        return PlannedOrder(symbol, side, quantity, price, notional)
    return PlannedOrder(symbol, side, quantity, price, notional, skip[0], skip[1])
