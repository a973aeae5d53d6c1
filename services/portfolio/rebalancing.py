"""A rebalance's orders as the API shows them, the ids they carry, and the check each
must pass: the parts of rebalancing (services/portfolio/service.py) between the pure
plan (rebalance.py) and the exchange."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from core.exceptions import AppError
from models.portfolio import (
    AllocationRead,
    RebalanceOrderRead,
    RebalanceOrderStatus,
    RebalancePlanRead,
)
from models.trading import OrderRead
from services.portfolio.rebalance import PlannedOrder, RebalancePlan

_ZERO = Decimal(0)


class OrderCheck(Protocol):
    """What each rebalancing order must pass before it is placed (an agent's risk
    check, services/agents/planning.RebalanceGate): `check` says None to place it, else
    why not; `placed` tells what it did (None: a dry run, taken as planned)."""

    def check(self, order: PlannedOrder) -> str | None: ...

    def placed(self, order: PlannedOrder, result: OrderRead | None) -> None: ...


RISK_REFUSED = "risk_refused"


def plan_prefix(plan_id: uuid.UUID) -> str:
    return f"rebalance-{plan_id.hex}-"


def client_order_id(plan_id: uuid.UUID, symbol: str) -> str:
    """One per plan and symbol, whatever order a retry plans them in: BTC/USD is
    `...-BTC-USD`; a symbol too long or odd for an id, a digest of it."""
    key = symbol.replace("/", "-")
    if len(key) > 21 or not (key.isascii() and key.replace("-", "").isalnum()):
        key = "h" + hashlib.sha256(symbol.encode()).hexdigest()[:20]
    return plan_prefix(plan_id) + key  # at most 43 + 21 = 64 characters


@dataclass(frozen=True, slots=True)
class Link:
    """Who a rebalance's orders are for: the account's agent, the decision behind it,
    and the check each must pass."""

    agent_id: uuid.UUID | None
    decision_id: uuid.UUID | None
    check: OrderCheck | None = None


def checked(
    planned: PlannedOrder, link: Link, *, placing: bool = False
) -> RebalanceOrderRead | None:
    """The order as refused by the link's check, or None to go on (a dry run's
    approved order counts as placed as planned)."""
    if link.check is None or planned.skipped:
        return None
    reason = link.check.check(planned)
    if reason is not None:
        return order_read(planned, None, refused=f"refused by risk: {reason}")
    if not placing:
        link.check.placed(planned, None)
    return None


def replayed_order(order: OrderRead) -> RebalanceOrderRead:
    price = order.average_price or order.price or Decimal(0)
    return RebalanceOrderRead(
        symbol=order.symbol,
        side=order.side,
        quantity=order.quantity,
        expected_price=price,
        expected_notional=price * order.quantity,
        status=RebalanceOrderStatus.PLACED,
        reason=order.reject_reason,
        order=order,
    )


def order_read(
    planned: PlannedOrder,
    order: OrderRead | None,
    *,
    failure: AppError | None = None,
    refused: str | None = None,
) -> RebalanceOrderRead:
    status = RebalanceOrderStatus.PLANNED
    reason_code = planned.skip_code.value if planned.skip_code else None
    reason = planned.skip_reason
    if planned.skipped:
        status = RebalanceOrderStatus.SKIPPED
    elif refused is not None:
        status, reason_code, reason = RebalanceOrderStatus.SKIPPED, RISK_REFUSED, refused
    elif failure is not None:
        status, reason_code, reason = RebalanceOrderStatus.FAILED, failure.code, failure.message
    elif order is not None:
        status = RebalanceOrderStatus.PLACED
        reason = order.reject_reason
    return RebalanceOrderRead(
        symbol=planned.symbol,
        side=planned.side,
        quantity=planned.quantity,
        expected_price=planned.price,
        expected_notional=planned.notional,
        status=status,
        reason_code=reason_code,
        reason=reason,
        order=order,
    )


def plan_read(
    plan_id: uuid.UUID,
    account_id: uuid.UUID,
    dry_run: bool,
    plan: RebalancePlan,
    targets: dict[str, Decimal],
    orders: list[RebalanceOrderRead],
) -> RebalancePlanRead:
    return RebalancePlanRead(
        plan_id=plan_id,
        account_id=account_id,
        dry_run=dry_run,
        equity=plan.equity,
        cash=plan.cash,
        cash_weight=1 - sum(targets.values(), _ZERO),
        allocations=[
            AllocationRead(
                symbol=a.symbol,
                mark_price=a.mark,
                current_quantity=a.current_quantity,
                current_value=a.current_value,
                current_weight=a.current_weight,
                target_weight=a.target_weight,
                target_value=a.target_value,
                target_quantity=a.target_quantity,
            )
            for a in plan.allocations
        ],
        orders=orders,
    )
