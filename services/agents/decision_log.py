"""The decision log: writing each cycle's row and its model call, reading them back,
replaying a decision, and confidence against outcomes.

A trade's row is written `pending` before its order goes out (the order references
it) and closed when the order returns; a row still pending at start was interrupted
and is closed as an error. Replay parses the stored answer again and plans on the
stored inputs (services/agents/planning.py), placing nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.config import AgentSettings
from core.exceptions import AppError, NotFoundError, ValidationFailedError
from database.orm import AgentDecision, LLMCall, Order
from database.orm.types import utcnow
from database.repositories import agents as agents_repo
from database.repositories import decisions as decisions_repo
from database.repositories import llm_calls as llm_calls_repo
from models.agents import (
    DecisionDetailRead,
    DecisionQuery,
    DecisionRead,
    LLMCallRead,
    ReplayRead,
)
from models.base import Page
from models.decisions import AgentContext, Decision
from models.enums import ActionTaken, DecisionStatus, DecisionTrigger, DecisionType, OrderSide
from models.trading import OrderRead
from services.agents.calibration import Calibration, Outcome, calibrate
from services.agents.context import Seen
from services.agents.planning import Inputs, plan
from services.infra.database import DatabaseService
from services.llm.base import Answer, ProviderResult, parse_decision
from services.market_data.service import MarketDataService

_ZERO = Decimal(0)
# A pending decision older than this at start was interrupted by a stop or a crash.
_INTERRUPTED_AFTER = timedelta(minutes=2)


@dataclass(slots=True)
class Verdict:
    """How a cycle ended, for its decision row."""

    status: DecisionStatus
    reason: str | None
    action: ActionTaken | None
    result: dict[str, Any]


def decision_symbol(market: MarketDataService, decision: Decision) -> str | None:
    if decision.symbol is None:
        return None
    try:
        return market.resolve_symbol(decision.symbol)
    except AppError:
        return None


class DecisionJournal:
    """A trade's decision row and model call, written in its order's transaction
    (services/paper_trading_service.OrderJournal) with the order's result: inserted
    once, complete, in the order's flush. Never left pending."""

    def __init__(
        self,
        row: AgentDecision,
        call: LLMCall | None,
        verdict_of: Callable[[OrderRead], Verdict],
        started: float,
    ) -> None:
        self._row = row
        self._call = call
        self._verdict_of = verdict_of
        self._started = started

    async def record(self, session: AsyncSession, order: OrderRead) -> None:
        apply_verdict(self._row, self._verdict_of(order), self._started)
        # The relationships order the INSERTs: call, row, order.
        decisions_repo.stage(session, self._row, self._call)


class DecisionLog:
    def __init__(
        self, database: DatabaseService, market: MarketDataService, config: AgentSettings
    ) -> None:
        self._database = database
        self._market = market
        self._config = config

    async def close_interrupted(self) -> int:
        cutoff = utcnow() - _INTERRUPTED_AFTER
        async with self._database.database.transaction() as session:
            return await decisions_repo.close_interrupted(session, created_before=cutoff)

    def draft(
        self,
        seen: Seen,
        result: ProviderResult | None,
        trigger: DecisionTrigger,
        coordination_id: uuid.UUID | None,
    ) -> tuple[AgentDecision, LLMCall | None]:
        """A cycle's decision row, pending until its verdict, and its model call's row
        (None when no model was asked)."""
        call = self._call_row(seen, result)
        row = AgentDecision(
            id=uuid.uuid4(),
            user_id=seen.agent.user_id,
            agent_id=seen.agent.id,
            trigger=trigger.value,
            status=DecisionStatus.PENDING.value,
            reasoning="",
            market_data=seen.logged_context(),
            result={},
            llm_call_id=call.id if call is not None else None,
            coordination_id=coordination_id,
            prompt_tokens=call.prompt_tokens if call is not None else 0,
            completion_tokens=call.completion_tokens if call is not None else 0,
            cost=call.cost if call is not None else _ZERO,
        )
        return row, call

    def _call_row(self, seen: Seen, result: ProviderResult | None) -> LLMCall | None:
        if result is None:
            return None
        record = result.to_record()
        return LLMCall(
            id=uuid.uuid4(),
            user_id=seen.agent.user_id,
            agent_id=seen.agent.id,
            provider=result.provider,
            model=result.model,
            request=storable({**result.request, "raw_answers": record["raw_answers"]}),
            raw_response=storable(result.raw_answer),
            parsed=storable(record["decision"]),
            error=storable((record["error"] or {}).get("message")),
            prompt_tokens=result.prompt_tokens or 0,
            completion_tokens=result.completion_tokens or 0,
            cost=result.cost or _ZERO,
            latency_ms=result.latency_ms,
        )

    async def write(
        self,
        row: AgentDecision,
        call: LLMCall | None,
        verdict: Verdict | None,
        started: float,
    ) -> DecisionRead:
        """The decision and its model call, closed with `verdict` (None: left pending,
        for `close` to finish)."""
        if verdict is not None:
            apply_verdict(row, verdict, started)
        async with self._database.database.transaction() as session:
            await decisions_repo.insert(session, row, call)
            return DecisionRead.model_validate(row)

    async def close(self, row: AgentDecision, verdict: Verdict, started: float) -> DecisionRead:
        apply_verdict(row, verdict, started)
        async with self._database.database.transaction() as session:
            await decisions_repo.update_verdict(session, row)
        return DecisionRead.model_validate(row)

    async def list_decisions(
        self, user_id: uuid.UUID, agent_id: uuid.UUID, filters: DecisionQuery
    ) -> Page[DecisionRead]:
        symbol = None
        if filters.symbol is not None:
            symbol = self._market.resolve_symbol(filters.symbol)
        limit, offset = filters.limit, filters.offset
        async with self._database.database.read() as session:
            await self._exists(session, user_id, agent_id)
            total, rows = await decisions_repo.page(
                session,
                agent_id,
                user_id=user_id,
                decision_type=_value(filters.decision_type),
                status=_value(filters.status),
                symbol=symbol,
                action_taken=_value(filters.action_taken),
                start=filters.start,
                end=filters.end,
                limit=limit,
                offset=offset,
            )
            items = [DecisionRead.model_validate(r) for r in rows]
        return Page[DecisionRead](items=items, total=total, limit=limit, offset=offset)

    @staticmethod
    async def _exists(session: AsyncSession, user_id: uuid.UUID, agent_id: uuid.UUID) -> None:
        """The agent is the user's (deleted ones included: their history stays readable)."""
        if not await agents_repo.exists(session, agent_id, user_id=user_id):
            raise NotFoundError(f"agent {agent_id} not found", details={"agent_id": str(agent_id)})

    async def _decision_row(
        self, session: AsyncSession, user_id: uuid.UUID, agent_id: uuid.UUID, decision_id: uuid.UUID
    ) -> tuple[AgentDecision, LLMCall | None]:
        await self._exists(session, user_id, agent_id)
        row = await decisions_repo.find(session, decision_id, user_id=user_id, agent_id=agent_id)
        if row is None:
            raise NotFoundError(
                f"decision {decision_id} not found", details={"decision_id": str(decision_id)}
            )
        call = await llm_calls_repo.find(session, row.llm_call_id) if row.llm_call_id else None
        return row, call

    async def get_decision(
        self, user_id: uuid.UUID, agent_id: uuid.UUID, decision_id: uuid.UUID
    ) -> DecisionDetailRead:
        """The decision in full: with the model call as sent and as answered."""
        async with self._database.database.read() as session:
            row, call = await self._decision_row(session, user_id, agent_id, decision_id)
            read = DecisionRead.model_validate(row).model_dump()
            return DecisionDetailRead(
                **read, llm_call=LLMCallRead.model_validate(call) if call else None
            )

    async def replay_decision(
        self, user_id: uuid.UUID, agent_id: uuid.UUID, decision_id: uuid.UUID
    ) -> ReplayRead:
        """Parse the stored answer again and plan on the stored inputs: the same decision
        and the same action, or the differences."""
        async with self._database.database.read() as session:
            row, call = await self._decision_row(session, user_id, agent_id, decision_id)
        logged_plan = (row.result or {}).get("plan") or {}
        logged_action = str(
            logged_plan.get("action") or ("error" if row.status == "error" else "none")
        )
        stored = row.market_data or {}
        if "context" not in stored or "inputs" not in stored:
            raise ValidationFailedError(
                "this decision kept no context to replay", code="not_replayable"
            )
        context = AgentContext.model_validate(stored["context"])
        inputs = Inputs.from_record(stored["inputs"])
        problems: list[str] = []
        if call is not None:
            if call.raw_response is None:
                decision, problems = None, [call.error or "the model returned no answer"]
            else:
                decision, problems = parse_decision(Answer(raw_text=call.raw_response), context)
        elif row.decision_type is not None:
            decision = _decision_of(row)
        else:
            decision = None
        if decision is None:
            replayed_action, replayed_plan = "error", None
        else:
            replayed_plan = plan(decision, decision_symbol(self._market, decision), inputs)
            replayed_action = replayed_plan.action
        parsed = decision.model_dump(mode="json") if decision is not None else None
        same_decision = parsed == (call.parsed if call is not None else parsed)
        return ReplayRead(
            decision_id=row.id,
            same_decision=same_decision,
            same_action=replayed_action == logged_action,
            logged_action=logged_action,
            replayed_action=replayed_action,
            replayed_decision=parsed,
            problems=problems,
            risk=replayed_plan.to_record()["risk"] if replayed_plan is not None else None,
        )

    async def calibration(self, user_id: uuid.UUID, agent_id: uuid.UUID) -> Calibration:
        """Executed trades whose horizon has passed: a buy won if the price a horizon
        later was above its average fill (fees included), a sell if it was below."""
        horizon = timedelta(seconds=self._config.calibration_horizon_seconds)
        cutoff = utcnow() - horizon
        async with self._database.database.read() as session:
            await self._exists(session, user_id, agent_id)
            rows = await decisions_repo.executed_trades(session, agent_id, created_until=cutoff)
            outcomes = []
            for confidence, order in rows:
                if confidence is None or not order.filled_quantity or order.average_price is None:
                    continue
                later = await self._price_at(order.symbol, order.created_at + horizon)
                if later is None:
                    continue
                outcomes.append(Outcome(confidence, _won(order, later)))
        return calibrate(outcomes)

    async def _price_at(self, symbol: str, moment: datetime) -> Decimal | None:
        candles = await self._market.candles(symbol, timeframe="1m", start=moment, limit=1)
        return candles[0].close if candles else None


def apply_verdict(row: AgentDecision, verdict: Verdict, started: float) -> None:
    row.status = verdict.status.value
    row.status_reason = storable(verdict.reason)
    row.action_taken = verdict.action.value if verdict.action is not None else None
    row.result = storable(verdict.result)
    row.reasoning = storable(row.reasoning)
    row.execution_time_ms = max(0, round((time.perf_counter() - started) * 1000))


def storable(value: Any) -> Any:
    """`value` with every NUL character in its texts (and keys) replaced by U+FFFD:
    PostgreSQL stores NUL in neither text nor JSON, and a model may answer with one."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def _value(member: StrEnum | None) -> str | None:
    return member.value if member is not None else None


def _won(order: Order, later: Decimal) -> bool:
    with localcontext() as ctx:
        ctx.prec = 40
        fee_per_unit = order.fees / order.filled_quantity
        average = order.average_price or _ZERO
        if order.side == OrderSide.BUY.value:
            return later > average + fee_per_unit
        return later < average - fee_per_unit


def _decision_of(row: AgentDecision) -> Decision | None:
    """An override's decision as it was logged (no model call to parse)."""
    if row.decision_type is None:
        return None
    data: dict[str, Any] = {
        "decision_type": row.decision_type,
        "symbol": row.symbol,
        "side": row.side,
        "order_type": row.order_type,
        "limit_price": row.price,
        "reasoning": row.reasoning or "-",
        "confidence_score": row.confidence_score if row.confidence_score is not None else 0,
    }
    plan_record = (row.result or {}).get("plan") or {}
    if row.decision_type == DecisionType.TRADE.value:
        data["quantity"] = plan_record.get("quantity") or row.quantity
    try:
        return Decision.model_validate(data)
    except ValueError:
        return None
