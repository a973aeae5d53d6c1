"""From a decision to what the agent will do: sizing and the pre-trade risk check.

Pure: the same decision and the same inputs (`Inputs`, stored with every decision)
always give the same plan, which is what a replay checks.

- A trade's size is its `quantity`, or `fraction_of_equity` x equity / expected price,
  rounded down to the pair's step. Expected price: the limit price, else the stop
  price, else the ask (buys) or the bid (sells).
- The risk check (services/agents/risk.py) runs on that size; any failed check refuses
  the trade, with every reason.
- A rebalance passes when its confidence clears the agent's minimum and no target
  weight exceeds the position limit.
- hold, analysis and risk_check decisions place nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Any, Literal

from models.decisions import Decision
from models.enums import DecisionType, OrderSide, OrderType
from services.agents.risk import (
    Holding,
    OrderIntent,
    RiskCheck,
    RiskLimits,
    RiskSnapshot,
    RiskVerdict,
    check_order,
)
from services.paper_trading.matching import MONEY_CONTEXT

PlannedAction = Literal["buy", "sell", "rebalance", "none", "refused"]
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

    def snapshot(self) -> RiskSnapshot:
        return RiskSnapshot(
            equity=self.equity,
            cash_free=self.cash_free,
            holdings=self.holdings,
            day_start_equity=self.day_start_equity,
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

    def to_record(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reason": self.reason,
            "quantity": _opt(self.quantity),
            "expected_price": _opt(self.price),
            "risk": self.verdict.to_record() if self.verdict is not None else None,
        }


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
    return Plan("none", f"{kind.value}: no order")


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
