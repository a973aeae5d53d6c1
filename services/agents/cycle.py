"""The decision cycle: one agent deciding once, from what it sees to the order placed.

A cycle, for one agent:
1. context: tickers, recent candles and indicators of its symbols (shared by agents
   deciding within AGENT_CONTEXT_TTL_SECONDS), its paper account marked to market,
   its risk limits and what is left of them, its remaining cost budget, its last
   decisions;
2. model: the daily budget is checked first (`budget_spent`: its token budget, its
   cost budget, and a call of unknown cost today without a token budget; spent, the
   agent is paused with the reason and nothing is asked); then its provider decides,
   its fallbacks asked in order when it cannot answer (services/llm/service.py,
   retries, repair and circuit breaker included) and the call is stored as sent and
   received (`llm_calls`, its cost null when unknown);
3. risk: sizing and the pre-trade checks (services/agents/planning.py);
4. execution: the order on the agent's own paper account, idempotent per decision
   (client_order_id `decision-{id}`).
Every cycle writes one `agent_decisions` row (a trade's row in its order's transaction,
complete with the order's result; a rebalance's row pending first, as its orders go
out one by one referencing it, and closed when they have) and
publishes `agent_decision` on `agents`; the cycle streams live as AG-UI events on
`agent:{id}` (services/agents/run_stream.py).

Steps 1 and 2 run under AGENT_CYCLE_DEADLINE_SECONDS: past it the cycle is logged as
an error decision (reason `deadline`) and nothing is executed; execution, once begun,
is never cut off.

One agent never runs two cycles at once: in-process by a lock per agent (kept by the
agent service), across instances by a cache lock, which lasts longer than the
deadline, plus a check of its last decision time (its newest decision row).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Protocol

import structlog

from core.exceptions import AppError, ConflictError
from database.orm import Agent, AgentDecision, LLMCall
from database.orm.types import utcnow
from database.repositories.llm_calls import Usage
from models.agents import DecisionRead
from models.decisions import Decision
from models.enums import (
    ActionTaken,
    AgentStatus,
    DecisionStatus,
    DecisionTrigger,
    OrderStatus,
    OrderType,
)
from models.events import Channel, EventType
from models.portfolio import RebalanceOrderStatus, RebalanceRequest
from models.portfolio import TargetWeight as PortfolioTarget
from models.trading import OrderCreate, OrderRead
from services.agents.context import ContextBuilder, Seen
from services.agents.decision_log import DecisionJournal, DecisionLog, Verdict, decision_symbol
from services.agents.planning import Plan, RebalanceGate, plan
from services.agents.run_stream import RunStream
from services.infra.cache import CacheService, LockNotAcquiredError
from services.infra.event_bus import EventBus
from services.llm.base import ProviderConfigError, ProviderResult
from services.llm.service import LLMService
from services.market_data.service import MarketDataService
from services.paper_trading.service import PaperTradingService
from services.portfolio.service import RISK_REFUSED, PortfolioService

log = structlog.get_logger(__name__)

# A scheduled cycle is skipped when the agent decided this share of its interval ago
# or less (another instance ran it).
_RECENT_SHARE = 0.5


class SetStatus(Protocol):
    """The agent's status changed and announced; `until_rollover`: a pause that lifts
    itself when the budget window (the UTC day) rolls over."""

    async def __call__(
        self,
        user_id: uuid.UUID,
        agent_id: uuid.UUID,
        status: AgentStatus,
        reason: str,
        *,
        until_rollover: bool = False,
    ) -> None: ...


# (channel, event_type, data, user_id): an event published, a failure logged.
Publish = Callable[[str, str, dict[str, Any], uuid.UUID], Awaitable[None]]


class BudgetSpentError(ConflictError):
    """The agent's daily cost budget is spent; it is paused and asks nothing."""

    code = "agent_budget_spent"


class DecisionCycle:
    """Runs agents' cycles; the agent service owns their schedule, locks and status."""

    def __init__(
        self,
        market_data: MarketDataService,
        paper_trading: PaperTradingService,
        portfolio: PortfolioService,
        llm: LLMService,
        event_bus: EventBus,
        cache: CacheService,
        context: ContextBuilder,
        decisions: DecisionLog,
        *,
        lock: Callable[[uuid.UUID], asyncio.Lock],
        set_status: SetStatus,
        publish: Publish,
        deadline_seconds: float = 120.0,
        lock_seconds: float = 150.0,
    ) -> None:
        self._market = market_data
        self._trading = paper_trading
        self._portfolio = portfolio
        self._llm = llm
        self._bus = event_bus
        self._cache = cache
        self._context = context
        self._decisions = decisions
        self._lock = lock
        self._set_status = set_status
        self._publish = publish
        self._deadline = deadline_seconds
        # Longer than the deadline: the lock never expires under a cycle still running.
        self._lock_seconds = max(lock_seconds, deadline_seconds + 1)
        self.cycles = 0

    async def run(
        self,
        user_id: uuid.UUID,
        agent_id: uuid.UUID,
        trigger: DecisionTrigger,
        *,
        given: Decision | None = None,
        coordination_id: uuid.UUID | None = None,
    ) -> DecisionRead:
        """One cycle under the agent's locks; a scheduled one is skipped (raising
        LockNotAcquiredError) when the agent is deciding or decided recently elsewhere."""
        scheduled = trigger is DecisionTrigger.SCHEDULED
        lock = self._lock(agent_id)
        if scheduled and lock.locked():
            raise LockNotAcquiredError(f"agent {agent_id} is deciding already")
        async with (
            lock,
            self._cache.lock(
                f"agent-cycle:{agent_id}",
                timeout=self._lock_seconds,
                blocking_timeout=1.0 if scheduled else None,
            ),
        ):
            return await self._run_held(user_id, agent_id, trigger, given, coordination_id)

    async def _run_held(
        self,
        user_id: uuid.UUID,
        agent_id: uuid.UUID,
        trigger: DecisionTrigger,
        given: Decision | None,
        coordination_id: uuid.UUID | None,
    ) -> DecisionRead:
        started = time.perf_counter()
        stream = RunStream(self._bus, agent_id=agent_id, user_id=user_id)
        await stream.started(input={"trigger": trigger.value})
        seen: Seen | None = None
        step = "context"
        try:
            # The deadline covers what can hang (the reads and the model, whose retries
            # and repair can outlast any lock); the execution that follows is not cut
            # off: a trade is one transaction with its decision, but a rebalance places
            # its orders one by one, and cancelled half-way it would be half-placed.
            try:
                async with asyncio.timeout(self._deadline) as deadline:
                    async with stream.step("context"):
                        seen = await self._context.see(user_id, agent_id)
                    if trigger is DecisionTrigger.SCHEDULED and self._decided_recently(seen):
                        await stream.finished({"skipped": "decided recently (another instance)"})
                        raise LockNotAcquiredError(f"agent {agent_id} decided recently")
                    result: ProviderResult | None = None
                    decision = given
                    if decision is None:
                        step = "model"
                        async with stream.step("model"):
                            result = await self.ask(seen)
                        decision = result.decision
                    deadline.reschedule(None)
            except TimeoutError:
                if not deadline.expired():
                    raise
                read = await self._deadline_passed(
                    user_id, agent_id, trigger, coordination_id, seen, step, started
                )
                await stream.failed(read.status_reason or "deadline", code="cycle_deadline")
                self.cycles += 1
                await self._publish_decision(read, user_id)
                return read
            read = await self._act(
                seen, decision, result, trigger, coordination_id, started, stream
            )
        except LockNotAcquiredError:
            raise
        except BudgetSpentError as e:
            await stream.failed(e.message, code=e.code)
            raise
        except BaseException as e:
            await stream.failed(f"cycle failed: {type(e).__name__}", code="cycle_failed")
            raise
        self.cycles += 1
        if read.reasoning:
            await stream.message(read.reasoning)
        await stream.finished({"decision_id": str(read.id), "status": read.status.value})
        await self._publish_decision(read, user_id)
        return read

    async def _publish_decision(self, read: DecisionRead, user_id: uuid.UUID) -> None:
        # The context it saw stays out of the event (it is the bulk of the row): a client
        # that wants it reads the decision over REST.
        data = read.model_dump(mode="json", exclude={"market_data"})
        await self._publish(Channel.AGENTS, EventType.AGENT_DECISION, data, user_id)

    async def _deadline_passed(
        self,
        user_id: uuid.UUID,
        agent_id: uuid.UUID,
        trigger: DecisionTrigger,
        coordination_id: uuid.UUID | None,
        seen: Seen | None,
        step: str,
        started: float,
    ) -> DecisionRead:
        """The cycle cut off by its deadline, logged as an error decision: nothing was
        executed (execution starts only within the deadline and is never cut off)."""
        waiting = "for the model" if step == "model" else "for its context"
        reason = (
            f"the cycle passed its deadline of {self._deadline:g} s "
            f"(AGENT_CYCLE_DEADLINE_SECONDS) waiting {waiting}; nothing was executed"
        )
        if seen is not None:
            row, _ = self._decisions.draft(seen, None, trigger, coordination_id)
        else:
            row = AgentDecision(
                id=uuid.uuid4(),
                user_id=user_id,
                agent_id=agent_id,
                trigger=trigger.value,
                status=DecisionStatus.PENDING.value,
                reasoning="",
                market_data={},
                result={},
                coordination_id=coordination_id,
                prompt_tokens=0,
                completion_tokens=0,
            )
        # A model call cut off may still be billed: its cost is not known.
        row.cost = None if step == "model" else Decimal(0)
        row.reasoning = "no decision: " + reason
        error = {"code": "cycle_deadline", "reason": "deadline", "message": reason}
        verdict = Verdict(DecisionStatus.ERROR, reason, ActionTaken.NONE, {"error": error})
        log.warning("agent_cycle_deadline", agent_id=str(agent_id), step=step)
        return await self._decisions.write(row, None, verdict, started)

    @staticmethod
    def _decided_recently(seen: Seen) -> bool:
        if seen.last_decided_at is None:
            return False
        age = (utcnow() - seen.last_decided_at).total_seconds()
        return age < seen.agent.decision_interval_seconds * _RECENT_SHARE

    async def ask(self, seen: Seen) -> ProviderResult:
        """The model's decision (failures inside the result), the agent's fallbacks
        asked in order when its model cannot answer. Raises BudgetSpentError, pausing
        the agent, when its daily budget is spent: nothing is asked."""
        agent = seen.agent
        fallbacks = [(f["provider"], f["model"]) for f in agent.llm_fallbacks or ()]
        paid = any(provider != "local" for provider, _ in [(agent.llm_provider, ""), *fallbacks])
        spent = budget_spent(agent, seen.spent_today) if paid else None
        if spent is not None:
            reason, rolls_over = spent
            await self._set_status(
                agent.user_id, agent.id, AgentStatus.PAUSED, reason, until_rollover=rolls_over
            )
            raise BudgetSpentError(reason, details={"agent_id": str(agent.id)})
        result = await self._llm.decide(
            str(agent.id),
            provider=agent.llm_provider,
            model=agent.llm_model,
            context=seen.context,
            fallbacks=fallbacks,
        )
        if isinstance(result.error, ProviderConfigError):
            # A key removed or rejected: the agent cannot go on until someone fixes it.
            await self._set_status(
                agent.user_id, agent.id, AgentStatus.ERROR, f"provider: {result.error.message}"
            )
        return result

    async def _act(
        self,
        seen: Seen,
        decision: Decision | None,
        result: ProviderResult | None,
        trigger: DecisionTrigger,
        coordination_id: uuid.UUID | None,
        started: float,
        stream: RunStream,
    ) -> DecisionRead:
        row, call = self._decisions.draft(seen, result, trigger, coordination_id)
        if decision is None:
            error = result.error if result is not None else None
            row.reasoning = "no decision: " + (error.message if error else "unknown")
            verdict = Verdict(
                DecisionStatus.ERROR,
                error.message if error else "the provider returned nothing",
                ActionTaken.NONE,
                {"error": result.to_record()["error"] if result else None},
            )
            return await self._decisions.write(row, call, verdict, started)
        symbol = decision_symbol(self._market, decision)
        self.describe(row, decision, symbol)
        async with stream.step("risk_check"):
            planned = plan(decision, symbol, seen.inputs)
        row.quantity = planned.quantity if planned.action in ("buy", "sell") else None
        if planned.action == "none":
            verdict = Verdict(
                DecisionStatus.SKIPPED,
                planned.reason,
                ActionTaken.NONE,
                {"plan": planned.to_record()},
            )
            return await self._decisions.write(row, call, verdict, started)
        if planned.action == "refused":
            verdict = Verdict(
                DecisionStatus.REJECTED,
                f"rejected by risk: {planned.reason}",
                ActionTaken.NONE,
                {"plan": planned.to_record()},
            )
            return await self._decisions.write(row, call, verdict, started)
        async with stream.step("execution"):
            if planned.action == "rebalance":
                # Its orders go out one by one, each referencing this row: log it first.
                await self._decisions.write(row, call, None, started)
                verdict = await self._rebalance(seen, decision, planned, row.id)
                return await self._decisions.close(row, verdict, started)
            if planned.action == "cancel":
                verdict = await self._cancel(seen, planned, row.id)
                return await self._decisions.write(row, call, verdict, started)
            return await self._trade(seen, decision, symbol, planned, row, call, started)

    @staticmethod
    def describe(row: AgentDecision, decision: Decision, symbol: str | None) -> None:
        """The decision's fields on its row."""
        row.decision_type = decision.decision_type.value
        row.symbol = symbol or decision.symbol
        row.side = decision.side.value if decision.side else None
        row.order_type = decision.order_type.value if decision.order_type else None
        row.price = decision.limit_price
        row.confidence_score = decision.confidence_score
        row.reasoning = decision.reasoning

    async def _rebalance(
        self, seen: Seen, decision: Decision, planned: Plan, decision_row_id: uuid.UUID
    ) -> Verdict:
        record: dict[str, Any] = {"plan": planned.to_record()}
        targets = [
            PortfolioTarget(symbol=w.symbol, weight=w.weight) for w in decision.target_weights or ()
        ]
        request = RebalanceRequest(targets=targets, account_id=seen.account.id)
        # Each order passes a trade's risk check, against the account as the rebalance's
        # earlier orders leave it.
        gate = RebalanceGate(seen.inputs, decision.confidence_score)
        try:
            # Keyed by the decision: the orders carry it, and a decision never runs twice.
            rebalanced = await self._portfolio.rebalance(
                seen.agent.user_id,
                request,
                idempotency_key=f"decision-{decision_row_id}",
                decision_id=decision_row_id,
                check=gate,
            )
        except AppError as e:
            return Verdict(DecisionStatus.REJECTED, e.message, ActionTaken.NONE, record)
        record["rebalance"] = rebalanced.model_dump(mode="json")
        record["order_risk"] = gate.verdicts
        placed = [o for o in rebalanced.orders if o.status is RebalanceOrderStatus.PLACED]
        # Refused by the agent's own check, or by the exchange (the user's limits, a
        # kill switch, the funds): a rebalance of which nothing was placed did nothing.
        refused = [
            o
            for o in rebalanced.orders
            if o.reason_code == RISK_REFUSED or o.status is RebalanceOrderStatus.FAILED
        ]
        reason = f"rebalance placed {len(placed)} order(s)"
        if refused:
            reason += "; " + "; ".join(f"{o.side.value} {o.symbol} {o.reason}" for o in refused)
        if refused and not placed:
            return Verdict(DecisionStatus.REJECTED, reason, ActionTaken.NONE, record)
        return Verdict(DecisionStatus.EXECUTED, reason, ActionTaken.REBALANCE, record)

    async def _cancel(self, seen: Seen, planned: Plan, decision_id: uuid.UUID) -> Verdict:
        """The open orders the decision named (the agent's own, checked by the plan),
        cancelled one by one through the exchange; one that closed since the agent saw
        it is reported, and the others are still cancelled."""
        cancelled: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for order_id in planned.order_ids:
            try:
                order = await self._trading.cancel_order(
                    seen.agent.user_id,
                    uuid.UUID(order_id),
                    reason=f"cancelled by agent {seen.agent.name} (decision {decision_id})",
                )
            except AppError as e:
                failed.append({"order_id": order_id, "code": e.code, "message": e.message})
                continue
            cancelled.append(_order_record(order))
        record = {"plan": planned.to_record(), "cancelled": cancelled, "not_cancelled": failed}
        reasons = "; ".join(f["message"] for f in failed)
        if not cancelled:
            return Verdict(
                DecisionStatus.REJECTED, f"nothing cancelled: {reasons}", ActionTaken.NONE, record
            )
        reason = f"cancelled {len(cancelled)} order(s): {', '.join(planned.order_ids)}"
        if failed:
            reason = f"cancelled {len(cancelled)} order(s); not cancelled: {reasons}"
        return Verdict(DecisionStatus.EXECUTED, reason, ActionTaken.CANCEL, record)

    async def _trade(
        self,
        seen: Seen,
        decision: Decision,
        symbol: str | None,
        planned: Plan,
        row: AgentDecision,
        call: LLMCall | None,
        started: float,
    ) -> DecisionRead:
        """The order, with the decision (and its model call) written in the order's
        own transaction; if the exchange refuses it, the refusal is logged instead."""
        agent, account = seen.agent, seen.account
        if symbol is None or decision.side is None or planned.quantity is None:
            raise ValueError("a planned trade without a symbol, side or quantity")
        order = OrderCreate(
            symbol=symbol,
            side=decision.side,
            order_type=decision.order_type or OrderType.MARKET,
            quantity=planned.quantity,
            price=decision.limit_price,
            stop_price=decision.stop_price,
            account_id=account.id,
            client_order_id=f"decision-{row.id.hex}",
            strategy=", ".join(agent.strategies)[:100] or None,
            reasoning=decision.reasoning,
        )
        record: dict[str, Any] = {"plan": planned.to_record()}

        def verdict_of(placed: OrderRead) -> Verdict:
            return _order_verdict(placed, {**record, "order": _order_record(placed)})

        journal = DecisionJournal(row, call, verdict_of, started)
        try:
            await self._trading.place_order(
                agent.user_id, order, agent_id=agent.id, decision_id=row.id, journal=journal
            )
        except AppError as e:
            record["order_error"] = {"code": e.code, "message": e.message}
            verdict = Verdict(
                DecisionStatus.REJECTED,
                f"the exchange refused: {e.message}",
                ActionTaken.NONE,
                record,
            )
            return await self._decisions.write(row, call, verdict, started)
        return DecisionRead.model_validate(row)


def budget_spent(agent: Agent, usage: Usage) -> tuple[str, bool] | None:
    """Why the agent's daily budget stops it now, and whether the next UTC day lifts
    that (None: it may ask). A call of unknown cost is never taken as free: without a
    token budget it stops the agent until someone prices the model or sets one."""
    rollover = "resumes at the next UTC midnight, or start the agent again"
    tokens = agent.daily_token_budget
    if tokens is not None and usage.tokens >= tokens:
        return (
            f"daily token budget of {tokens} tokens spent ({usage.tokens} today); {rollover}",
            True,
        )
    if usage.cost >= agent.daily_cost_budget:
        return (
            f"daily cost budget of {agent.daily_cost_budget} USD spent "
            f"({usage.cost} USD today); {rollover}",
            True,
        )
    if usage.unknown_cost_calls and tokens is None:
        return (
            f"{usage.unknown_cost_calls} of today's model calls cost an unknown amount (the "
            "model has no price and its provider reported none), so the daily cost budget "
            "cannot be kept; add the model to LLM_PRICES or set a daily_token_budget, then "
            "start the agent again",
            False,
        )
    return None


def _order_record(order: OrderRead) -> dict[str, Any]:
    return order.model_dump(
        mode="json",
        include={
            "id",
            "status",
            "symbol",
            "side",
            "order_type",
            "quantity",
            "filled_quantity",
            "average_price",
            "fees",
            "reject_reason",
        },
    )


def _order_verdict(order: OrderRead, record: dict[str, Any]) -> Verdict:
    action = ActionTaken(order.side.value)
    if order.status is OrderStatus.REJECTED:
        return Verdict(
            DecisionStatus.REJECTED,
            f"the exchange rejected the order: {order.reject_reason}",
            ActionTaken.NONE,
            record,
        )
    if order.status is OrderStatus.CANCELLED and not order.filled_quantity:
        return Verdict(
            DecisionStatus.REJECTED,
            f"nothing filled: {order.reject_reason}",
            ActionTaken.NONE,
            record,
        )
    if order.status in (OrderStatus.PENDING, OrderStatus.PARTIAL):
        reason = f"order {order.id} is {order.status.value}: {order.filled_quantity} filled so far"
    else:
        reason = f"{order.filled_quantity} filled at {order.average_price}"
    return Verdict(DecisionStatus.EXECUTED, reason, action, record)
