"""A user's limits measured on an account, with or without an order about to be placed.

`evaluate` returns one reading per limit that applies: the measure now, after the order,
the share of the limit it uses, and whether the order is refused for it (with no order:
whether the account is over it). Pure and `Decimal` only; the pre-trade check
(services/risk/gate.py), the monitor and the stress tests all call it.

What an order can be refused for (docs/risk.md):

- daily_loss, max_drawdown: once the loss reaches the limit, buys are refused; sells
  (exits) pass, since they cannot add to the loss of a long-only account.
- position_size, gross_exposure, leverage: a buy that would take the measure past the
  limit; a sell only ever lowers them. With equity at or below zero leverage is
  unmeasurable and a buy is refused, saying so.
- max_open_orders: an order that may rest (anything but a market order) when the
  count after it would pass the limit, either side.
- order_notional: an order, either side, whose notional passes the limit.

A limit is reached at equality for the losses (a loss of exactly the limit stops
entries) and passed above it for the others (a position of exactly the limit is allowed).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, localcontext

from models.base import decimal_to_str
from models.enums import OrderSide
from models.risk import PER_SYMBOL_LIMITS, LimitType
from services.paper_trading.matching import MONEY_CONTEXT
from services.risk.state import ZERO, AccountState, LimitReading, LimitRule, OrderIntent

_RATIO_QUANTUM = Decimal("0.000001")


def applies(rule: LimitRule, state: AccountState, intent: OrderIntent | None) -> bool:
    """The rule is of this account and, with an order, of the order's symbol."""
    if rule.account_id is not None and rule.account_id != state.account_id:
        return False
    if intent is not None and rule.symbol is not None and rule.limit_type in PER_SYMBOL_LIMITS:
        return rule.symbol == intent.symbol
    return True


def evaluate(
    state: AccountState, rules: Iterable[LimitRule], intent: OrderIntent | None = None
) -> list[LimitReading]:
    """One reading per rule that applies (see the module doc)."""
    with localcontext(MONEY_CONTEXT):
        return [_reading(rule, state, intent) for rule in rules if applies(rule, state, intent)]


def breaches(readings: Iterable[LimitReading]) -> list[LimitReading]:
    return [reading for reading in readings if reading.breached]


def _reading(rule: LimitRule, state: AccountState, intent: OrderIntent | None) -> LimitReading:
    kind = rule.limit_type
    buy = intent is not None and intent.side is OrderSide.BUY
    if kind in (LimitType.DAILY_LOSS, LimitType.MAX_DRAWDOWN):
        return _loss(rule, state, intent, buy)
    if kind is LimitType.POSITION_SIZE:
        return _position(rule, state, intent, buy)
    if kind is LimitType.GROSS_EXPOSURE:
        current = state.gross_exposure
        projected = current + intent.notional if buy and intent is not None else current
        return _over(
            rule, current, projected, order=intent is not None, counts=buy, what="gross exposure"
        )
    if kind is LimitType.LEVERAGE:
        return _leverage(rule, state, intent, buy)
    if kind is LimitType.MAX_OPEN_ORDERS:
        return _open_orders(rule, state, intent)
    return _notional(rule, intent)


def _loss(
    rule: LimitRule, state: AccountState, intent: OrderIntent | None, buy: bool
) -> LimitReading:
    if rule.limit_type is LimitType.DAILY_LOSS:
        base, what = state.day_start_equity, "today's loss"
        current = None if base is None else max(ZERO, base - state.equity)
    else:
        base, what = state.peak_equity, "drawdown from peak"
        current = None if base is None or base <= 0 else max(ZERO, (base - state.equity) / base)
    if current is None:
        return LimitReading(rule, None, None, None, False, f"{what} is not known yet: not checked")
    reached = current >= rule.limit_value
    breached = reached and (buy or intent is None)
    shown = _show(current, rule.limit_type)
    reason = (
        f"{what} {shown} has reached the limit {_show(rule.limit_value, rule.limit_type)}"
        + (": no new entries" if intent is not None else "")
        if reached
        else f"{what} {shown} is within the limit {_show(rule.limit_value, rule.limit_type)}"
    )
    return LimitReading(rule, current, current, _share(current, rule.limit_value), breached, reason)


def _position(
    rule: LimitRule, state: AccountState, intent: OrderIntent | None, buy: bool
) -> LimitReading:
    if intent is not None:
        symbol = intent.symbol
    elif rule.symbol is not None:
        symbol = rule.symbol
    else:  # every symbol: the largest one is the one that counts
        symbol = max(state.exposures, key=lambda s: state.exposures[s], default="")
    current = state.exposures.get(symbol, ZERO)
    projected = current + intent.notional if buy and intent is not None else current
    return _over(
        rule,
        current,
        projected,
        order=intent is not None,
        counts=buy,
        what=f"{symbol or 'no'} position",
    )


def _leverage(
    rule: LimitRule, state: AccountState, intent: OrderIntent | None, buy: bool
) -> LimitReading:
    gross = state.gross_exposure
    if state.equity <= 0:
        return LimitReading(
            rule,
            None,
            None,
            None,
            buy or (intent is None and gross > 0),
            f"equity {decimal_to_str(state.equity)} is not positive: leverage cannot be measured",
        )
    current = (gross / state.equity).quantize(_RATIO_QUANTUM)
    after = gross + intent.notional if buy and intent is not None else gross
    projected = (after / state.equity).quantize(_RATIO_QUANTUM)
    return _over(rule, current, projected, order=intent is not None, counts=buy, what="leverage")


def _open_orders(rule: LimitRule, state: AccountState, intent: OrderIntent | None) -> LimitReading:
    if rule.symbol is not None:
        current = Decimal(state.open_orders.get(rule.symbol, 0))
        what = f"open orders of {rule.symbol}"
    else:
        current, what = Decimal(state.open_order_count), "open orders"
    adds = intent is not None and intent.rests
    projected = current + 1 if adds else current
    return _over(rule, current, projected, order=intent is not None, counts=adds, what=what)


def _notional(rule: LimitRule, intent: OrderIntent | None) -> LimitReading:
    if intent is None:
        return LimitReading(rule, None, None, None, False, "measured on each order")
    return _over(
        rule, intent.notional, intent.notional, order=True, counts=True, what="order notional"
    )


def _over(
    rule: LimitRule,
    current: Decimal,
    projected: Decimal,
    *,
    order: bool,
    counts: bool,
    what: str,
) -> LimitReading:
    """A measure limited from above: breached when it would pass the limit."""
    limit = rule.limit_value
    if order:
        breached = counts and projected > limit
        shown = f"{what} would be {_show(projected, rule.limit_type)}"
        if projected != current:
            now, then = _show(current, rule.limit_type), _show(projected, rule.limit_type)
            shown = f"{what} {now} would become {then}"
    else:
        breached = current > limit
        shown = f"{what} is {_show(current, rule.limit_type)}"
    verdict = "over" if breached else "within"
    reason = f"{shown}, {verdict} the limit {_show(limit, rule.limit_type)}"
    return LimitReading(rule, current, projected, _share(projected, limit), breached, reason)


def _share(value: Decimal, limit: Decimal) -> Decimal | None:
    return None if limit <= 0 else (value / limit).quantize(_RATIO_QUANTUM)


def _show(value: Decimal, kind: LimitType) -> str:
    if kind is LimitType.MAX_DRAWDOWN:
        return f"{decimal_to_str((value * 100).quantize(Decimal('0.01')))}%"
    if kind is LimitType.LEVERAGE:
        return f"{decimal_to_str(value.normalize())}x"
    return decimal_to_str(value.normalize() if value == value.to_integral() else value)
