"""A pair's trading rules applied to a new order: reject what breaks them, with the rule.

Choices, made for the demanding user:

- Prices (limit and stop) off the tick are rejected, never rounded: moving a price
  changes the trade asked for (rounded away from the market it may never fill, rounded
  towards it it may fill worse than the stated limit). The error names the two valid
  prices around it.
- Quantity is rounded down to the step: that only ever trades less than asked, at
  the asked price. Rounding to zero, below `min_quantity` or above `max_quantity` is
  rejected.
- `min_notional` is checked on the rounded quantity at the price the order is expected
  to trade: its limit (limit, stop_limit), its stop (stop, which becomes market there),
  the touch for a market order (the ask for a buy, the bid for a sell).

Every failure is a `RuleViolation`, a 422 whose `code` names the rule and whose
details carry the values involved as strings.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from enum import StrEnum

from connectors.base import PairRules
from core.exceptions import ValidationFailedError
from models.enums import OrderSide
from services.paper_trading.matching import Order

# Integer division and remainder are exact as long as the quotient fits: 60 digits
# covers any price over any tick a venue lists.
_RULES_CONTEXT = Context(prec=60, traps=[InvalidOperation, DivisionByZero, Overflow])


class RuleCode(StrEnum):
    PRICE_OFF_TICK = "price_off_tick"
    STOP_PRICE_OFF_TICK = "stop_price_off_tick"
    QUANTITY_BELOW_STEP = "quantity_below_step"
    QUANTITY_BELOW_MINIMUM = "quantity_below_minimum"
    QUANTITY_ABOVE_MAXIMUM = "quantity_above_maximum"
    NOTIONAL_BELOW_MINIMUM = "notional_below_minimum"
    NO_MARKET_PRICE = "no_market_price"


class RuleViolation(ValidationFailedError):
    """An order breaks one of its pair's rules; `rule` says which."""

    def __init__(self, rule: RuleCode, message: str, details: dict[str, str]) -> None:
        super().__init__(message, code=rule.value, details={"rule": rule.value, **details})
        self.rule = rule


def round_down_to_step(value: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of `step` not above `value` (both positive)."""
    return _RULES_CONTEXT.multiply(_RULES_CONTEXT.divide_int(value, step), step)


def is_on_tick(price: Decimal, tick: Decimal) -> bool:
    return not _RULES_CONTEXT.remainder(price, tick)


def normalize_order(
    order: Order,
    rules: PairRules,
    *,
    bid: Decimal | None = None,
    ask: Decimal | None = None,
) -> Order:
    """The new order with its quantity rounded down to the step; raises RuleViolation
    when a rule is broken. A market order needs the touch of its side (`ask` for a buy,
    `bid` for a sell) to check the minimum notional."""
    if order.symbol != rules.symbol:
        raise ValueError(f"order {order.id} is for {order.symbol}, the rules for {rules.symbol}")
    if order.remaining != order.quantity:
        raise ValueError(f"order {order.id} is not new")
    _check_tick(order.limit_price, rules.tick_size, RuleCode.PRICE_OFF_TICK, "limit price")
    _check_tick(order.stop_price, rules.tick_size, RuleCode.STOP_PRICE_OFF_TICK, "stop price")
    quantity = _check_quantity(order.quantity, rules)
    price = _reference_price(order, bid=bid, ask=ask)
    notional = _RULES_CONTEXT.multiply(quantity, price)
    if notional < rules.min_notional:
        raise RuleViolation(
            RuleCode.NOTIONAL_BELOW_MINIMUM,
            f"order value {notional} (quantity {quantity} at {price}) is below the "
            f"minimum of {rules.min_notional}",
            {
                "notional": str(notional),
                "quantity": str(quantity),
                "price": str(price),
                "min_notional": str(rules.min_notional),
            },
        )
    if quantity == order.quantity:
        return order
    return replace(order, quantity=quantity, remaining=quantity)


def _check_tick(price: Decimal | None, tick: Decimal, rule: RuleCode, name: str) -> None:
    if price is None or is_on_tick(price, tick):
        return
    below = round_down_to_step(price, tick)
    above = _RULES_CONTEXT.add(below, tick)
    raise RuleViolation(
        rule,
        f"{name} {price} is not a multiple of the tick size {tick} "
        f"(nearest valid: {below} or {above})",
        {
            "price": str(price),
            "tick_size": str(tick),
            "nearest_below": str(below),
            "nearest_above": str(above),
        },
    )


def _check_quantity(requested: Decimal, rules: PairRules) -> Decimal:
    quantity = round_down_to_step(requested, rules.step_size)
    if quantity == requested:
        quantity = requested  # keep the exponent the client sent: "0.1", not "0.1000"
    details = {"quantity": str(requested), "rounded_quantity": str(quantity)}
    if not quantity:
        raise RuleViolation(
            RuleCode.QUANTITY_BELOW_STEP,
            f"quantity {requested} is below the step size {rules.step_size}",
            {**details, "step_size": str(rules.step_size)},
        )
    if quantity < rules.min_quantity:
        raise RuleViolation(
            RuleCode.QUANTITY_BELOW_MINIMUM,
            f"quantity {quantity} is below the minimum of {rules.min_quantity}",
            {**details, "min_quantity": str(rules.min_quantity)},
        )
    if quantity > rules.max_quantity:
        raise RuleViolation(
            RuleCode.QUANTITY_ABOVE_MAXIMUM,
            f"quantity {quantity} is above the maximum of {rules.max_quantity}",
            {**details, "max_quantity": str(rules.max_quantity)},
        )
    return quantity


def _reference_price(order: Order, *, bid: Decimal | None, ask: Decimal | None) -> Decimal:
    # Order guarantees a limit price on limit/stop_limit and a stop price on stop.
    if order.limit_price is not None:
        return order.limit_price
    if order.stop_price is not None:
        return order.stop_price
    touch = ask if order.side is OrderSide.BUY else bid
    if touch is None:
        side = "asks" if order.side is OrderSide.BUY else "bids"
        raise RuleViolation(
            RuleCode.NO_MARKET_PRICE,
            f"no {side} in the {order.symbol} book to price a market {order.side}",
            {"symbol": order.symbol, "side": order.side.value},
        )
    return touch
