"""Coordination: several agents decide on one symbol at once, their views combined.

Each member is asked about the coordinated symbol only: its context (the prompt a model
gets, what the local rules read, and what its decision logs) shows that symbol alone.
Its view is a decision cycle that executes nothing: its context, its model's answer
and the plan it would make on its own account, logged as its decision (`skipped`, or
`error` with why), with the share of its account the trade would move. The views are
combined by a confidence-weighted vote with a risk veto
(services/agents/coordination.py); when asked, the executor then runs the combined
decision, sized on its own account (a share of its equity or of its holding), through
the ordinary cycle, its own risk checks included.

Streaming: the coordination is one AG-UI run on the executor's channel
`agent:{executor_id}`, whose run id is the coordination id. Every member's steps show
inside it, prefixed with the member's name ("Ann: model"), then `combine`; each other
member's cycle also streams as its own run on `agent:{member_id}`, with `parentRunId`
the coordination id and the coordination id in its input. The executed cycle follows
as the executor's ordinary run (trigger `coordination`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable
from decimal import Decimal, localcontext

import structlog

from core.exceptions import ValidationFailedError
from models.agents import CoordinateRequest, CoordinationRead, DecisionRead
from models.base import decimal_to_str
from models.decisions import Decision
from models.enums import ActionTaken, DecisionStatus, DecisionTrigger, DecisionType, OrderSide
from services.agents.context import ContextBuilder, Seen, owned_agent
from services.agents.coordination import MemberView, combine
from services.agents.cycle import BudgetSpentError, DecisionCycle
from services.agents.decision_log import DecisionLog, Verdict, decision_symbol
from services.agents.planning import Plan, plan
from services.agents.run_stream import RunStream
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus
from services.llm.base import ProviderResult
from services.market_data.service import MarketDataService
from services.paper_trading.matching import MONEY_CONTEXT

# Logged under the service, as before this part moved out of it.
log = structlog.get_logger("services.agents.service")

_ZERO = Decimal(0)


class Coordinator:
    def __init__(
        self,
        database: DatabaseService,
        market: MarketDataService,
        context: ContextBuilder,
        decisions: DecisionLog,
        cycle: DecisionCycle,
        lock: Callable[[uuid.UUID], asyncio.Lock],
    ) -> None:
        self._database = database
        self._market = market
        self._context = context
        self._decisions = decisions
        self._decision_cycle = cycle
        self._lock = lock

    async def coordinate(
        self, user_id: uuid.UUID, body: CoordinateRequest, *, bus: EventBus
    ) -> CoordinationRead:
        """Every member decides on the symbol at once; the views are combined by a
        confidence-weighted vote with a risk veto (services/agents/coordination.py)."""
        symbol = self._market.resolve_symbol(body.symbol)
        members = list(dict.fromkeys(body.agent_ids))
        if len(members) < 2:
            raise ValidationFailedError("coordination needs at least two different agents")
        executor = body.executor_id or members[0]
        if executor not in members:
            raise ValidationFailedError(
                "the executor must be one of the agents", details={"executor_id": str(executor)}
            )
        coordination_id = uuid.uuid4()
        names: dict[uuid.UUID, str] = {}
        async with self._database.database.read() as session:
            for agent_id in members:
                agent, _ = await owned_agent(session, user_id, agent_id)
                if symbol not in agent.symbols:
                    raise ValidationFailedError(
                        f"agent {agent.name!r} does not trade {symbol}; add it to its symbols",
                        details={"agent_id": str(agent_id), "symbol": symbol},
                    )
                names[agent_id] = agent.name
        run = RunStream(bus, agent_id=executor, user_id=user_id, run_id=coordination_id)
        await run.started(
            input={
                "trigger": DecisionTrigger.COORDINATION.value,
                "coordination_id": str(coordination_id),
                "symbol": symbol,
                "members": [str(a) for a in members],
                "executor_id": str(executor),
            }
        )
        try:
            views = await asyncio.gather(
                *(
                    self._member_view(
                        user_id,
                        a,
                        symbol,
                        coordination_id,
                        # The executor's channel carries the coordination run itself.
                        RunStream(
                            bus,
                            agent_id=a,
                            user_id=user_id,
                            parent=run,
                            label=names[a],
                            own_channel=a != executor,
                        ),
                    )
                    for a in members
                )
            )
            async with run.step("combine"):
                combined = combine(symbol, [m.view for m in views])
        except BaseException as e:
            await run.failed(f"coordination failed: {type(e).__name__}", code="coordination_failed")
            raise
        await run.message(combined.reasoning)
        on_executor = next(m for m in views if m.agent_id == executor)
        decision = combined.to_decision(holding=on_executor.holding(symbol))
        preview = plan(decision, symbol, on_executor.seen.inputs)
        await run.finished(
            {
                "coordination_id": str(coordination_id),
                "action": combined.action,
                "confidence": decimal_to_str(combined.confidence),
                "members": [str(m.read.id) for m in views],
            }
        )
        executed = None
        if body.execute:
            executed = await self._decision_cycle.run(
                user_id,
                executor,
                DecisionTrigger.COORDINATION,
                given=decision,
                coordination_id=coordination_id,
            )
        log.info(
            "agents_coordinated",
            coordination_id=str(coordination_id),
            action=combined.action,
            members=len(members),
        )
        return CoordinationRead(
            coordination_id=coordination_id,
            symbol=symbol,
            action=combined.action,
            confidence=combined.confidence,
            share=combined.share,
            quantity=_quantity(executed, preview),
            scores=combined.scores,
            vetoed_by=list(combined.vetoed_by),
            abstained=list(combined.abstained),
            reasoning=combined.reasoning,
            members=[m.read for m in views],
            executed=executed,
        )

    async def _member_view(
        self,
        user_id: uuid.UUID,
        agent_id: uuid.UUID,
        symbol: str,
        coordination_id: uuid.UUID,
        stream: RunStream,
    ) -> _Member:
        """One member's view of the symbol, streamed as its run inside the coordination's
        and logged as its decision (nothing executed)."""
        async with self._lock(agent_id):
            await stream.started(
                input={
                    "trigger": DecisionTrigger.COORDINATION.value,
                    "coordination_id": str(coordination_id),
                    "symbol": symbol,
                }
            )
            try:
                member = await self._decide(user_id, agent_id, symbol, coordination_id, stream)
            except BaseException as e:
                await stream.failed(f"cycle failed: {type(e).__name__}", code="cycle_failed")
                raise
            if member.read.reasoning:
                await stream.message(member.read.reasoning)
            await stream.finished(
                {"decision_id": str(member.read.id), "status": member.read.status.value}
            )
        return member

    async def _decide(
        self,
        user_id: uuid.UUID,
        agent_id: uuid.UUID,
        symbol: str,
        coordination_id: uuid.UUID,
        stream: RunStream,
    ) -> _Member:
        started = time.perf_counter()
        async with stream.step("context"):
            seen = focused(await self._context.see(user_id, agent_id), symbol)
        result: ProviderResult | None = None
        budget_error: str | None = None
        try:
            async with stream.step("model"):
                result = await self._decision_cycle.ask(seen)
        except BudgetSpentError as e:
            budget_error = e.message
        decision = result.decision if result is not None else None
        row, call = self._decisions.draft(
            seen, result, DecisionTrigger.COORDINATION, coordination_id
        )
        if decision is not None:
            decided = decision_symbol(self._market, decision)
            DecisionCycle.describe(row, decision, decided)
            async with stream.step("risk_check"):
                view_plan = plan(decision, decided, seen.inputs)
            row.quantity = view_plan.quantity if view_plan.action in ("buy", "sell") else None
            share = member_share(decision, decided, view_plan, seen, symbol)
            verdict = Verdict(
                DecisionStatus.SKIPPED,
                f"a view on {symbol} in coordination {coordination_id}; executed only as the vote",
                ActionTaken.NONE,
                {
                    "plan": view_plan.to_record(),
                    "coordination": {
                        "symbol": symbol,
                        "share": decimal_to_str(share) if share is not None else None,
                    },
                },
            )
            view = MemberView(str(agent_id), seen.agent.name, decision, share=share)
        else:
            error = result.error.message if result and result.error else str(budget_error)
            row.reasoning = f"no decision: {error}"
            verdict = Verdict(DecisionStatus.ERROR, error, ActionTaken.NONE, {})
            view = MemberView(str(agent_id), seen.agent.name, None, error=error)
        read = await self._decisions.write(row, call, verdict, started)
        return _Member(agent_id, seen, view, read)


@dataclasses.dataclass(frozen=True, slots=True)
class _Member:
    agent_id: uuid.UUID
    seen: Seen
    view: MemberView
    read: DecisionRead

    def holding(self, symbol: str) -> Decimal:
        held = self.seen.inputs.holdings.get(symbol)
        return held.quantity_free if held is not None else _ZERO


def focused(seen: Seen, symbol: str) -> Seen:
    """What the agent saw, with the market of `symbol` alone (its market context and its
    trading terms): the model is asked about that symbol, and may name no other in a
    trade. The account (positions, open orders) stays whole."""
    context = seen.context
    update = {
        "symbols": [s for s in context.symbols if s.symbol == symbol],
        "terms": [t for t in context.terms if t.symbol == symbol],
    }
    return dataclasses.replace(seen, context=context.model_copy(update=update))


def member_share(
    decision: Decision, symbol: str | None, planned: Plan, seen: Seen, coordinated: str
) -> Decimal | None:
    """The share of its own account a member's trade on the coordinated symbol moves: a
    buy's notional over its equity, a sell's quantity over its free holding. None for
    anything else, or a trade that sized to nothing."""
    if (
        decision.decision_type is not DecisionType.TRADE
        or symbol != coordinated
        or planned.quantity is None
        or planned.quantity <= 0
    ):
        return None
    inputs = seen.inputs
    with localcontext(MONEY_CONTEXT):
        if decision.side is OrderSide.BUY:
            if planned.price is None or inputs.equity <= 0:
                return None
            return planned.quantity * planned.price / inputs.equity
        held = inputs.holdings.get(coordinated)
        if held is None or held.quantity_free <= 0:
            return None
        return planned.quantity / held.quantity_free


def _quantity(executed: DecisionRead | None, preview: Plan) -> Decimal | None:
    if executed is not None:
        return executed.quantity
    return preview.quantity if preview.action in ("buy", "sell") else None
