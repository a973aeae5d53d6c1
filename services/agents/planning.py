"""From a decision to what the agent will do: sizing and the pre-trade risk check.

Pure: the same decision and the same inputs (`Inputs`, stored with every decision)
always give the same plan, which is what a replay checks.

- A trade's size is its `quantity`, or `fraction_of_equity` x equity / expected price,
  rounded down to the pair's step. Expected price: the limit price, else the stop
  price, else the ask (buys) or the bid (sells).
- The risk check (services/agents/risk.py) runs on that size; any failed check refuses
  the trade, with every reason.
- A rebalance passes when its confidence clears the agent's minimum and no target
  weight exceeds the position limit. Each order it then places passes the same risk
  check as a trade (`RebalanceGate`), against the snapshot as the rebalance's earlier
  orders change it; a refused one is not placed, with its reasons.
- Open orders of the account (`Inputs.open_orders`) count in the checks as risk.py says.
- A cancel names open orders the agent placed on its account; any other id refuses
  the whole decision, naming it.
- hold, analysis and risk_check decisions place nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Any, Literal

from models.decisions import Decision
from models.enums import DecisionType, OrderSide, OrderType
from models.trading import OrderRead
from services.agents.risk import (
    Holding,
    OpenOrder,
    OrderIntent,
    RiskCheck,
    RiskLimits,
    RiskSnapshot,
    RiskVerdict,
    check_order,
)
from services.paper_trading.matching import MONEY_CONTEXT, fee_for
from services.portfolio.rebalance import PlannedOrder

PlannedAction = Literal["buy", "sell", "rebalance", "cancel", "none", "refused"]
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Quote:
    """What sizing needs to know of one symbol."""

    bid: Decimal
    ask: Decimal
    step_size: Decimal


@dataclass(frozen=True, slots=True)
class Inputs:
    """The account and the market as the agent saw them, JSON-round-trippable."""

    equity: Decimal
    cash_free: Decimal
    fee_bps: Decimal
    day_start_equity: Decimal | None
    holdings: dict[str, Holding]
    quotes: dict[str, Quote]
    limits: RiskLimits
    # The account's open orders, oldest first (absent from records made before them).
    open_orders: tuple[OpenOrder, ...] = ()

    def snapshot(self) -> RiskSnapshot:
        return RiskSnapshot(
            equity=self.equity,
            cash_free=self.cash_free,
            holdings=self.holdings,
            day_start_equity=self.day_start_equity,
            open_orders=self.open_orders,
        )

    def to_record(self) -> dict[str, Any]:
        limits = self.limits
        return {
            "equity": str(self.equity),
            "cash_free": str(self.cash_free),
            "fee_bps": str(self.fee_bps),
            "day_start_equity": _opt(self.day_start_equity),
            "holdings": {
                symbol: {
                    "quantity_free": str(h.quantity_free),
                    "quantity": str(h.quantity),
                    "mark_price": str(h.mark_price),
                }
                for symbol, h in self.holdings.items()
            },
            "quotes": {
                symbol: {"bid": str(q.bid), "ask": str(q.ask), "step_size": str(q.step_size)}
                for symbol, q in self.quotes.items()
            },
            "limits": {
                "max_position_pct": str(limits.max_position_pct),
                "max_order_pct": _opt(limits.max_order_pct),
                "max_open_positions": limits.max_open_positions,
                "max_daily_loss_pct": _opt(limits.max_daily_loss_pct),
                "min_confidence": str(limits.min_confidence),
            },
            "open_orders": [_order_to_record(o) for o in self.open_orders],
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Inputs:
        limits = record["limits"]
        return cls(
            equity=Decimal(record["equity"]),
            cash_free=Decimal(record["cash_free"]),
            fee_bps=Decimal(record["fee_bps"]),
            day_start_equity=_dec(record["day_start_equity"]),
            holdings={
                symbol: Holding(
                    quantity_free=Decimal(h["quantity_free"]),
                    quantity=Decimal(h["quantity"]),
                    mark_price=Decimal(h["mark_price"]),
                )
                for symbol, h in record["holdings"].items()
            },
            quotes={
                symbol: Quote(Decimal(q["bid"]), Decimal(q["ask"]), Decimal(q["step_size"]))
                for symbol, q in record["quotes"].items()
            },
            limits=RiskLimits(
                max_position_pct=Decimal(limits["max_position_pct"]),
                max_order_pct=_dec(limits["max_order_pct"]),
                max_open_positions=limits["max_open_positions"],
                max_daily_loss_pct=_dec(limits["max_daily_loss_pct"]),
                min_confidence=Decimal(limits["min_confidence"]),
            ),
            open_orders=tuple(_order_from_record(o) for o in record.get("open_orders", ())),
        )


def _order_to_record(order: OpenOrder) -> dict[str, Any]:
    return {
        "id": order.id,
        "symbol": order.symbol,
        "side": order.side.value,
        "order_type": order.order_type.value,
        "remaining": str(order.remaining),
        "price": str(order.price),
        "limit_price": _opt(order.limit_price),
        "stop_price": _opt(order.stop_price),
        "placed_at": order.placed_at.isoformat(),
        "by_agent": order.by_agent,
    }


def _order_from_record(record: dict[str, Any]) -> OpenOrder:
    return OpenOrder(
        id=record["id"],
        symbol=record["symbol"],
        side=OrderSide(record["side"]),
        order_type=OrderType(record["order_type"]),
        remaining=Decimal(record["remaining"]),
        price=Decimal(record["price"]),
        limit_price=_dec(record["limit_price"]),
        stop_price=_dec(record["stop_price"]),
        placed_at=datetime.fromisoformat(record["placed_at"]),
        by_agent=bool(record["by_agent"]),
    )


def _opt(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


@dataclass(frozen=True, slots=True)
class Plan:
    action: PlannedAction
    reason: str
    quantity: Decimal | None = None
    price: Decimal | None = None
    verdict: RiskVerdict | None = None
    checks: tuple[RiskCheck, ...] = field(default=())
    # A cancel's orders (ids of open orders the agent placed).
    order_ids: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "action": self.action,
            "reason": self.reason,
            "quantity": _opt(self.quantity),
            "expected_price": _opt(self.price),
            "risk": self.verdict.to_record() if self.verdict is not None else None,
        }
        if self.order_ids:
            record["order_ids"] = list(self.order_ids)
        return record


def expected_price(decision: Decision, quote: Quote) -> Decimal:
    if decision.limit_price is not None:
        return decision.limit_price
    if decision.stop_price is not None:
        return decision.stop_price
    return quote.ask if decision.side is OrderSide.BUY else quote.bid


def size(decision: Decision, *, equity: Decimal, price: Decimal, step: Decimal) -> Decimal:
    """Base quantity of a trade, rounded down to the step (0 when it rounds away)."""
    with localcontext(MONEY_CONTEXT):
        if decision.quantity is not None:
            raw = decision.quantity
        elif decision.fraction_of_equity is not None and price > 0:
            raw = decision.fraction_of_equity * equity / price
        else:
            raw = _ZERO
        if step > 0:
            return (raw / step).to_integral_value(rounding=ROUND_DOWN) * step
        return raw


def plan(decision: Decision, symbol: str | None, inputs: Inputs) -> Plan:
    """What the agent does with `decision`; `symbol` is the decision's symbol resolved
    to the market's name (None when it names none)."""
    kind = decision.decision_type
    if kind is DecisionType.TRADE:
        return _plan_trade(decision, symbol, inputs)
    if kind is DecisionType.REBALANCE:
        return _plan_rebalance(decision, inputs)
    if kind is DecisionType.CANCEL:
        return _plan_cancel(decision, inputs)
    return Plan("none", f"{kind.value}: no order")


def _plan_cancel(decision: Decision, inputs: Inputs) -> Plan:
    """Only open orders the agent placed on its account may be cancelled."""
    orders = {o.id: o for o in inputs.open_orders}
    wanted = [str(order_id) for order_id in decision.order_ids or ()]
    problems = []
    for order_id in wanted:
        order = orders.get(order_id)
        if order is None:
            problems.append(f"order {order_id} is not an open order of the agent's account")
        elif not order.by_agent:
            problems.append(f"order {order_id} was not placed by this agent")
    if problems:
        return Plan("refused", "; ".join(problems))
    return Plan("cancel", f"cancel {len(wanted)} open order(s)", order_ids=tuple(wanted))


def _plan_trade(decision: Decision, symbol: str | None, inputs: Inputs) -> Plan:
    if symbol is None or symbol not in inputs.quotes:
        return Plan("refused", f"no market quote for {decision.symbol}")
    if decision.side is None:
        return Plan("refused", "a trade without a side")
    quote = inputs.quotes[symbol]
    price = expected_price(decision, quote)
    quantity = size(decision, equity=inputs.equity, price=price, step=quote.step_size)
    if quantity <= 0:
        return Plan(
            "refused",
            f"the order rounds to zero at the pair's step {quote.step_size}",
            quantity=quantity,
            price=price,
        )
    intent = OrderIntent(
        symbol=symbol,
        side=decision.side,
        quantity=quantity,
        price=price,
        confidence=decision.confidence_score,
        fee_bps=inputs.fee_bps,
    )
    verdict = check_order(intent, inputs.snapshot(), inputs.limits)
    if not verdict.approved:
        return Plan("refused", "; ".join(verdict.reasons), quantity, price, verdict)
    action: PlannedAction = "buy" if decision.side is OrderSide.BUY else "sell"
    order_type = decision.order_type or OrderType.MARKET
    return Plan(
        action,
        f"{action} {quantity} {symbol} ({order_type.value}) passed the risk checks",
        quantity,
        price,
        verdict,
    )


def _plan_rebalance(decision: Decision, inputs: Inputs) -> Plan:
    limits = inputs.limits
    problems = []
    if decision.confidence_score < limits.min_confidence:
        problems.append(
            f"confidence {decision.confidence_score} is below the agent's minimum "
            f"{limits.min_confidence}"
        )
    cap = limits.max_position_pct / 100
    for target in decision.target_weights or ():
        if target.weight > cap:
            problems.append(
                f"target weight {target.weight} for {target.symbol} exceeds the position "
                f"limit of {limits.max_position_pct}% of equity"
            )
    if problems:
        return Plan("refused", "; ".join(problems))
    return Plan("rebalance", "rebalance within the limits")


class RebalanceGate:
    """The pre-trade check of each order a rebalance places (the same as a trade's),
    against the snapshot as the rebalance's earlier orders change it: what a placed
    order filled moves cash and the holding at its average price and costs equity its
    fee. Implements the portfolio service's `OrderCheck`; `verdicts` keeps every
    check, for the decision's record."""

    def __init__(self, inputs: Inputs, confidence: Decimal) -> None:
        self._snapshot = inputs.snapshot()
        self._limits = inputs.limits
        self._fee_bps = inputs.fee_bps
        self._confidence = confidence
        self.verdicts: list[dict[str, Any]] = []

    def check(self, order: PlannedOrder) -> str | None:
        """None to place the order, else the reasons it is refused."""
        if order.quantity <= 0 or order.price <= 0:
            return None  # Nothing to place: the planner skips it with its own reason.
        intent = OrderIntent(
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity,
            price=order.price,
            confidence=self._confidence,
            fee_bps=self._fee_bps,
        )
        verdict = check_order(intent, self._snapshot, self._limits)
        self.verdicts.append(
            {"symbol": order.symbol, "side": order.side.value, **verdict.to_record()}
        )
        return None if verdict.approved else "; ".join(verdict.reasons)

    def placed(self, order: PlannedOrder, result: OrderRead | None) -> None:
        """`order` went out and `result` is what it did (None: a dry run, taken as
        planned)."""
        price: Decimal | None
        if result is None:
            quantity, price = order.quantity, order.price
            fee = fee_for(quantity * price, self._fee_bps)
        else:
            quantity, price, fee = result.filled_quantity, result.average_price, result.fees
        if not quantity or price is None:
            return
        snapshot = self._snapshot
        with localcontext(MONEY_CONTEXT):
            notional = quantity * price
            signed = quantity if order.side is OrderSide.BUY else -quantity
            held = snapshot.holdings.get(order.symbol) or Holding(_ZERO, _ZERO, price)
            holdings = dict(snapshot.holdings)
            holdings[order.symbol] = Holding(
                quantity_free=max(_ZERO, held.quantity_free + signed),
                quantity=max(_ZERO, held.quantity + signed),
                mark_price=held.mark_price,
            )
            cash = notional + fee if order.side is OrderSide.BUY else fee - notional
            self._snapshot = replace(
                snapshot,
                equity=snapshot.equity - fee,
                cash_free=snapshot.cash_free - cash,
                holdings=holdings,
            )
