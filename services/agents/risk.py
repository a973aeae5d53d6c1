"""The pre-trade risk check: pure, `Decimal` only, every reason reported at once.

`check_order` runs every check that applies to the order and never stops at the first
failure, so the decision log shows all the reasons an order was refused. The order is
approved only when every check passes.

A buy is checked for:

- confidence: the agent's confidence is at least `min_confidence`.
- cash: notional + taker fee (`fee_for`, as the paper exchange charges it) is at most
  the free cash.
- order_size: the notional is at most `max_order_pct` of equity (skipped with no limit).
- position_size: the symbol's exposure (its holding at its mark, plus the unfilled
  remainder of the account's open buys of it at their limit or stop price) plus the
  notional is at most `max_position_pct` of equity: several resting buys, each within
  the limit, cannot together fill past it.
- open_positions: when the symbol is not held yet (quantity > 0) and no open buy of it
  rests, the distinct symbols held or bought by an open order after the buy are at
  most `max_open_positions` (skipped with no limit, and when the symbol is already
  held or bought, since the buy opens no position).
- daily_loss: today's loss (start-of-day equity - equity) is below `max_daily_loss_pct`
  of start-of-day equity; once it reaches the limit, buys are refused. Skipped with no
  limit; with the start-of-day equity unknown (or not positive) it passes, saying so.

Equity at or below zero fails order_size and position_size: nothing can be sized
against it, so every buy is refused.

A sell is checked for confidence and holding (the quantity is at most the free quantity
held: spot, no shorting). A sell reduces risk, so the size, position and daily-loss
checks do not apply to it.

Open orders (`RiskSnapshot.open_orders`) count where they commit the account: what
they lock is already out of the free cash and the free quantity (the paper exchange
moves it from free to locked when the order is placed), so the cash and holding checks
see resting buys and sells through those; their unfilled buys add to the symbol's
exposure and may open a position, which the position checks add. The order-size check
is of this order alone.

Limits compare exactly (`value * 100 <= limit * equity`, no division); percentages are
rounded to 2 places in the details only. Arithmetic runs in `MONEY_CONTEXT`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from enum import StrEnum
from typing import Any

from models.base import decimal_to_str
from models.enums import OrderSide, OrderType
from services.paper_trading.matching import MONEY_CONTEXT, fee_for

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_PCT_QUANTUM = Decimal("0.01")


class CheckName(StrEnum):
    CONFIDENCE = "confidence"
    CASH = "cash"
    HOLDING = "holding"
    ORDER_SIZE = "order_size"
    POSITION_SIZE = "position_size"
    OPEN_POSITIONS = "open_positions"
    DAILY_LOSS = "daily_loss"


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Percentages are of equity, in (0, 100]; None means no such limit."""

    max_position_pct: Decimal
    max_order_pct: Decimal | None
    max_open_positions: int | None
    max_daily_loss_pct: Decimal | None
    min_confidence: Decimal

    def __post_init__(self) -> None:
        if not _ZERO < self.max_position_pct <= _HUNDRED:
            raise ValueError("max_position_pct must be within (0, 100]")
        if self.max_order_pct is not None and not _ZERO < self.max_order_pct <= _HUNDRED:
            raise ValueError("max_order_pct must be within (0, 100]")
        if self.max_daily_loss_pct is not None and not _ZERO < self.max_daily_loss_pct <= _HUNDRED:
            raise ValueError("max_daily_loss_pct must be within (0, 100]")
        if self.max_open_positions is not None and self.max_open_positions < 0:
            raise ValueError("max_open_positions must not be negative")
        if not _ZERO <= self.min_confidence <= 1:
            raise ValueError("min_confidence must be within [0, 1]")

    @classmethod
    def for_agent(
        cls,
        *,
        risk_tolerance: Decimal,
        max_position_pct: Decimal,
        max_open_positions: int | None = None,
        max_daily_loss_pct: Decimal | None = None,
    ) -> RiskLimits:
        """An agent's limits: a single order may be as large as its largest position, and
        the more risk it tolerates the less confidence it needs (0.5 at 0, 0.2 at 1)."""
        if not _ZERO <= risk_tolerance <= 1:
            raise ValueError("risk_tolerance must be within [0, 1]")
        with localcontext(MONEY_CONTEXT):
            min_confidence = Decimal("0.5") - Decimal("0.3") * risk_tolerance
        return cls(
            max_position_pct=max_position_pct,
            max_order_pct=max_position_pct,
            max_open_positions=max_open_positions,
            max_daily_loss_pct=max_daily_loss_pct,
            min_confidence=min_confidence,
        )


@dataclass(frozen=True, slots=True)
class Holding:
    """`quantity` is valued at `mark_price`; `quantity_free` can be sold now."""

    quantity_free: Decimal
    quantity: Decimal
    mark_price: Decimal


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """An order of the account still open: `remaining` is its unfilled quantity and
    `price` what one unit of it commits (its limit price, else its stop price, else the
    market's touch when it was seen). `by_agent`: the account's agent placed it (the
    orders a cancel decision may name)."""

    id: str
    symbol: str
    side: OrderSide
    order_type: OrderType
    remaining: Decimal
    price: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    placed_at: datetime
    by_agent: bool

    @property
    def notional(self) -> Decimal:
        with localcontext(MONEY_CONTEXT):
            return self.remaining * self.price


@dataclass(frozen=True, slots=True)
class RiskSnapshot:
    """The account as the check sees it; `day_start_equity` None means unknown.
    `cash_free` and each holding's `quantity_free` are net of what open orders lock."""

    equity: Decimal
    cash_free: Decimal
    holdings: Mapping[str, Holding]
    day_start_equity: Decimal | None
    quote_currency: str = "USD"
    open_orders: tuple[OpenOrder, ...] = ()

    def open_buys(self, symbol: str) -> tuple[OpenOrder, ...]:
        return tuple(o for o in self.open_orders if o.symbol == symbol and o.side is OrderSide.BUY)

    def exposed_symbols(self) -> set[str]:
        """Symbols held (quantity > 0) or bought by an open order: the open positions."""
        held = {symbol for symbol, holding in self.holdings.items() if holding.quantity > 0}
        return held | {o.symbol for o in self.open_orders if o.side is OrderSide.BUY}


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """`price` is the expected execution price: the ask for a buy, the bid for a sell, or
    the limit price."""

    symbol: str
    side: OrderSide
    quantity: Decimal
    price: Decimal
    confidence: Decimal
    fee_bps: Decimal

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise ValueError("quantity must be positive")
        if self.price <= 0:
            raise ValueError("price must be positive")
        if not _ZERO <= self.confidence <= 1:
            raise ValueError("confidence must be within [0, 1]")
        if self.fee_bps < 0:
            raise ValueError("fee_bps must not be negative")

    @property
    def notional(self) -> Decimal:
        with localcontext(MONEY_CONTEXT):
            return self.quantity * self.price


@dataclass(frozen=True, slots=True)
class RiskCheck:
    name: CheckName
    passed: bool
    # A sentence with the numbers behind the result.
    detail: str


@dataclass(frozen=True, slots=True)
class RiskVerdict:
    checks: tuple[RiskCheck, ...]

    @property
    def approved(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def reasons(self) -> tuple[str, ...]:
        """The failed checks' details, in the order they ran."""
        return tuple(check.detail for check in self.checks if not check.passed)

    def to_record(self) -> dict[str, Any]:
        return {
            "approved": self.approved,
            "checks": [
                {"name": check.name.value, "passed": check.passed, "detail": check.detail}
                for check in self.checks
            ],
        }


def check_order(intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> RiskVerdict:
    """Every check that applies to the order, passed or failed; approved when all pass."""
    with localcontext(MONEY_CONTEXT):
        checks = [_confidence(intent, limits)]
        if intent.side is OrderSide.SELL:
            checks.append(_holding(intent, snapshot))
        else:
            checks.append(_cash(intent, snapshot))
            if limits.max_order_pct is not None:
                checks.append(_order_size(intent, snapshot, limits.max_order_pct))
            checks.append(_position_size(intent, snapshot, limits.max_position_pct))
            opens = intent.symbol not in snapshot.exposed_symbols()
            if limits.max_open_positions is not None and opens:
                checks.append(_open_positions(intent, snapshot, limits.max_open_positions))
            if limits.max_daily_loss_pct is not None:
                checks.append(_daily_loss(snapshot, limits.max_daily_loss_pct))
    return RiskVerdict(tuple(checks))


def _confidence(intent: OrderIntent, limits: RiskLimits) -> RiskCheck:
    passed = intent.confidence >= limits.min_confidence
    relation = "meets" if passed else "is below"
    return RiskCheck(
        CheckName.CONFIDENCE,
        passed,
        f"confidence {_num(intent.confidence)} {relation} the minimum "
        f"{_num(limits.min_confidence)}",
    )


def _holding(intent: OrderIntent, snapshot: RiskSnapshot) -> RiskCheck:
    holding = snapshot.holdings.get(intent.symbol)
    free = holding.quantity_free if holding is not None else _ZERO
    quantity = f"{_num(intent.quantity)} {intent.symbol}"
    if intent.quantity <= free:
        return RiskCheck(CheckName.HOLDING, True, f"sells {quantity} of {_num(free)} free")
    held = f"only {_num(free)} is free" if holding is not None else "none is held"
    return RiskCheck(
        CheckName.HOLDING, False, f"sells {quantity} but {held} (spot: no short selling)"
    )


def _cash(intent: OrderIntent, snapshot: RiskSnapshot) -> RiskCheck:
    notional = intent.notional
    fee = fee_for(notional, intent.fee_bps)
    cost = notional + fee
    passed = cost <= snapshot.cash_free
    relation = "is within" if passed else "exceeds"
    ccy = snapshot.quote_currency
    return RiskCheck(
        CheckName.CASH,
        passed,
        f"order cost {_num(cost)} {ccy} (notional {_num(notional)} + fee {_num(fee)}) "
        f"{relation} free cash {_num(snapshot.cash_free)} {ccy}",
    )


def _order_size(intent: OrderIntent, snapshot: RiskSnapshot, limit_pct: Decimal) -> RiskCheck:
    return _share_of_equity(
        CheckName.ORDER_SIZE, "order notional", intent.notional, snapshot, limit_pct
    )


def _position_size(intent: OrderIntent, snapshot: RiskSnapshot, limit_pct: Decimal) -> RiskCheck:
    holding = snapshot.holdings.get(intent.symbol)
    current = holding.quantity * holding.mark_price if holding is not None else _ZERO
    label = "position after the order"
    open_buys = snapshot.open_buys(intent.symbol)
    if open_buys:
        resting = sum((o.notional for o in open_buys), _ZERO)
        current += resting
        label += (
            f" (with {len(open_buys)} open buy order(s) of {_num(resting)} "
            f"{snapshot.quote_currency} still to fill)"
        )
    return _share_of_equity(
        CheckName.POSITION_SIZE, label, current + intent.notional, snapshot, limit_pct
    )


def _share_of_equity(
    name: CheckName, label: str, value: Decimal, snapshot: RiskSnapshot, limit_pct: Decimal
) -> RiskCheck:
    ccy = snapshot.quote_currency
    equity = snapshot.equity
    if equity <= 0:
        return RiskCheck(
            name,
            False,
            f"equity is {_num(equity)} {ccy}, not positive: no buy can be sized against it",
        )
    # The relation is stated in words: rounded, 10.004% and 9.996% both read 10%.
    passed = value * _HUNDRED <= limit_pct * equity
    relation = "within" if passed else "over"
    return RiskCheck(
        name,
        passed,
        f"{label} {_num(value)} {ccy} is {_pct(value, equity)}% of equity, "
        f"{relation} the {_num(limit_pct)}% limit",
    )


def _open_positions(intent: OrderIntent, snapshot: RiskSnapshot, limit: int) -> RiskCheck:
    exposed = snapshot.exposed_symbols()
    after = len(exposed) + 1
    held = {symbol for symbol, holding in snapshot.holdings.items() if holding.quantity > 0}
    pending = len(exposed - held)
    counted = f" ({pending} of them opened by open buy orders)" if pending else ""
    return RiskCheck(
        CheckName.OPEN_POSITIONS,
        after <= limit,
        f"the order opens a position in {intent.symbol}: {after} positions after it"
        f"{counted}; limit {limit}",
    )


def _daily_loss(snapshot: RiskSnapshot, limit_pct: Decimal) -> RiskCheck:
    ccy = snapshot.quote_currency
    start = snapshot.day_start_equity
    if start is None:
        return RiskCheck(
            CheckName.DAILY_LOSS, True, "start-of-day equity unknown: daily loss not checked"
        )
    if start <= 0:
        return RiskCheck(
            CheckName.DAILY_LOSS,
            True,
            f"start-of-day equity {_num(start)} {ccy} is not positive: daily loss not checked",
        )
    loss = start - snapshot.equity
    if loss <= 0:
        return RiskCheck(
            CheckName.DAILY_LOSS,
            True,
            f"no loss today: equity {_num(snapshot.equity)} {ccy} against {_num(start)} {ccy} "
            "at the start of the day",
        )
    passed = loss * _HUNDRED < limit_pct * start
    detail = (
        f"today's loss {_num(loss)} {ccy} is {_pct(loss, start)}% of start-of-day equity "
        f"{_num(start)} {ccy}, "
    )
    if passed:
        detail += f"under the {_num(limit_pct)}% limit"
    else:
        detail += f"at or over the {_num(limit_pct)}% limit: buys are refused for the day"
    return RiskCheck(CheckName.DAILY_LOSS, passed, detail)


def _num(value: Decimal) -> str:
    """Plain notation without trailing zeros: 12000.00 -> '12000'."""
    return decimal_to_str(value.normalize(MONEY_CONTEXT))


def _pct(part: Decimal, whole: Decimal) -> str:
    with localcontext(MONEY_CONTEXT):
        return _num((part * _HUNDRED / whole).quantize(_PCT_QUANTUM))
