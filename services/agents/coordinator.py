"""Coordination: several agents decide on one symbol at once, their views combined.

Each member's view is a decision cycle that executes nothing: its context, its model's
answer and the plan it would make, logged as its decision (`skipped`, or `error` with
why). The views are combined by a confidence-weighted vote with a risk veto
(services/agents/coordination.py); when asked, the executor then runs the combined
decision through the ordinary cycle.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import structlog

from core.exceptions import ValidationFailedError
from models.agents import CoordinateRequest, CoordinationRead, DecisionRead
from models.enums import ActionTaken, DecisionStatus, DecisionTrigger
from services.agents.context import ContextBuilder, owned_agent
from services.agents.coordination import MemberView, combine
from services.agents.cycle import BudgetSpentError, DecisionCycle
from services.agents.decision_log import DecisionLog, Verdict, decision_symbol
from services.agents.planning import plan
from services.infra.database import DatabaseService
from services.llm.base import ProviderResult
from services.market_data.service import MarketDataService

# Logged under the service, as before this part moved out of it.
log = structlog.get_logger("services.agents.service")


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

    async def coordinate(self, user_id: uuid.UUID, body: CoordinateRequest) -> CoordinationRead:
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
        async with self._database.database.read() as session:
            for agent_id in members:
                agent, _ = await owned_agent(session, user_id, agent_id)
                if symbol not in agent.symbols:
                    raise ValidationFailedError(
                        f"agent {agent.name!r} does not trade {symbol}; add it to its symbols",
                        details={"agent_id": str(agent_id), "symbol": symbol},
                    )
        views = await asyncio.gather(
            *(self._member_view(user_id, a, coordination_id) for a in members)
        )
        combined = combine(symbol, [v for v, _ in views])
        executed = None
        if body.execute:
            executed = await self._decision_cycle.run(
                user_id,
                executor,
                DecisionTrigger.COORDINATION,
                given=combined.to_decision(),
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
            quantity=combined.quantity,
            scores=combined.scores,
            vetoed_by=list(combined.vetoed_by),
            abstained=list(combined.abstained),
            reasoning=combined.reasoning,
            members=[read for _, read in views],
            executed=executed,
        )

    async def _member_view(
        self, user_id: uuid.UUID, agent_id: uuid.UUID, coordination_id: uuid.UUID
    ) -> tuple[MemberView, DecisionRead]:
        """One member's view of the symbol, logged as its decision (nothing executed)."""
        async with self._lock(agent_id):
            started = time.perf_counter()
            seen = await self._context.see(user_id, agent_id)
            result: ProviderResult | None = None
            budget_error: str | None = None
            try:
                result = await self._decision_cycle.ask(seen)
            except BudgetSpentError as e:
                budget_error = e.message
            decision = result.decision if result is not None else None
            row, call = self._decisions.draft(
                seen, result, DecisionTrigger.COORDINATION, coordination_id
            )
            quantity = None
            if decision is not None:
                DecisionCycle.describe(row, decision, decision_symbol(self._market, decision))
                view_plan = plan(decision, decision_symbol(self._market, decision), seen.inputs)
                quantity = view_plan.quantity
                verdict = Verdict(
                    DecisionStatus.SKIPPED,
                    f"a view in coordination {coordination_id}; executed only as the vote",
                    ActionTaken.NONE,
                    {"plan": view_plan.to_record()},
                )
                view = MemberView(str(agent_id), seen.agent.name, decision, quantity=quantity)
            else:
                error = result.error.message if result and result.error else str(budget_error)
                row.reasoning = f"no decision: {error}"
                verdict = Verdict(DecisionStatus.ERROR, error, ActionTaken.NONE, {})
                view = MemberView(str(agent_id), seen.agent.name, None, error=error)
            read = await self._decisions.write(row, call, verdict, started)
        return view, read
