"""The decision log: writing each cycle's row and its model call, reading them back,
replaying a decision, and confidence against outcomes.

A trade's row is written `pending` before its order goes out (the order references
it) and closed when the order returns; a row still pending at start was interrupted
and is closed as an error. A replay runs on what `stored` returns
(services/agents/replay.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from core.config import AgentSettings
from core.exceptions import AppError, NotFoundError
from database.orm import Agent, AgentDecision, LLMCall, Order, Trade
from database.orm.types import utcnow
from database.repositories import agents as agents_repo
from database.repositories import decisions as decisions_repo
from database.repositories import llm_calls as llm_calls_repo
from database.repositories import orders as orders_repo
from database.repositories import trades as trades_repo
from database.repositories.llm_calls import Usage
from models.agents import (
    DecisionDetailRead,
    DecisionQuery,
    DecisionRead,
    LLMCallRead,
)
from models.base import Page
from models.calibration import CalibrationOutcome
from models.decisions import Decision
from models.enums import ActionTaken, DecisionStatus, DecisionTrigger, DecisionType, OrderSide
from models.trading import OrderRead
from services.agents.calibration import (
    Calibration,
    Closed,
    FillRecord,
    Outcome,
    calibrate,
    closed_lots,
)
from services.agents.context import Seen, owned_agent, spent_today
from services.infra.database import DatabaseService
from services.llm.base import ProviderResult
from services.market_data.service import MarketDataService
from services.paper_trading.matching import MONEY_CONTEXT

_ZERO = Decimal(0)
# Rows read per page when calibration reads all of an agent's orders and fills.
_PAGE = 500
# A calibration outcome's result, as shown.
_RESULT_QUANTUM = Decimal("0.00000001")
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
            # Unknown (None) when its call's is; nothing asked costs nothing.
            cost=call.cost if call is not None else _ZERO,
            answered_provider=call.provider if call is not None else None,
            answered_model=call.model if call is not None else None,
        )
        return row, call

    def _call_row(self, seen: Seen, result: ProviderResult | None) -> LLMCall | None:
        if result is None:
            return None
        return call_row(seen.agent.user_id, seen.agent.id, result)

    async def usage_today(self, user_id: uuid.UUID, agent_id: uuid.UUID) -> tuple[Agent, Usage]:
        """The user's agent and its model calls since UTC midnight (NotFoundError)."""
        async with self._database.database.read() as session:
            agent, _account = await owned_agent(session, user_id, agent_id)
            return agent, await spent_today(session, agent.id)

    async def record_call(
        self, user_id: uuid.UUID, agent_id: uuid.UUID, result: ProviderResult
    ) -> LLMCall:
        """A model call made outside a cycle (a replay), stored so the agent's budget
        counts what it cost."""
        call = call_row(user_id, agent_id, result)
        async with self._database.database.transaction() as session:
            session.add(call)
        return call

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

    async def stored(
        self, user_id: uuid.UUID, agent_id: uuid.UUID, decision_id: uuid.UUID
    ) -> tuple[AgentDecision, LLMCall | None]:
        """The decision's row and its model call as stored (what a replay runs on);
        NotFoundError unless it is the user's agent's."""
        async with self._database.database.read() as session:
            return await self._decision_row(session, user_id, agent_id, decision_id)

    async def calibration(self, user_id: uuid.UUID, agent_id: uuid.UUID) -> Calibration:
        """Every filled order of the agent's executed trade and rebalance decisions: a buy
        that later sells closed (in part) is judged by the realised PnL of what they
        closed, net of fees (services/agents/calibration.py); any other order, once its
        horizon has passed, by the price then against its average fill, fees included."""
        horizon = timedelta(seconds=self._config.calibration_horizon_seconds)
        now = utcnow()
        async with self._database.database.read() as session:
            await self._exists(session, user_id, agent_id)
            confidences = await _confidences(session, user_id, agent_id, now)
            orders = [
                o
                for o in await _orders_of(session, user_id, agent_id)
                if o.decision_id in confidences and o.filled_quantity and o.average_price
            ]
            fills = await _fills_of(session, user_id, {o.account_id for o in orders})
        closed = closed_lots(fills)
        outcomes = []
        for order in sorted(orders, key=lambda o: (o.created_at, o.id)):
            confidence = confidences[order.decision_id] if order.decision_id else _ZERO
            outcome = await self._judge(order, confidence, closed.get(order.id), horizon, now)
            if outcome is not None:
                outcomes.append(outcome)
        return calibrate(outcomes)

    async def _judge(
        self,
        order: Order,
        confidence: Decimal,
        closed: Closed | None,
        horizon: timedelta,
        now: datetime,
    ) -> Outcome | None:
        """The order's outcome; None while it can be judged neither way yet."""
        if order.decision_id is None:
            return None
        closed_quantity = None
        if order.side == OrderSide.BUY.value and closed is not None and closed.quantity > 0:
            kind: Literal["realised", "horizon"] = "realised"
            result = closed.pnl
            closed_quantity = closed.quantity
        else:
            if order.created_at + horizon > now:
                return None
            later = await self._price_at(order.symbol, order.created_at + horizon)
            if later is None:
                return None
            kind, result = "horizon", _move(order, later)
        detail = CalibrationOutcome(
            decision_id=order.decision_id,
            order_id=order.id,
            symbol=order.symbol,
            side=OrderSide(order.side).value,
            confidence=confidence,
            outcome=kind,
            won=result > 0,
            result=result.quantize(_RESULT_QUANTUM, context=MONEY_CONTEXT),
            closed_quantity=closed_quantity,
        )
        return Outcome(confidence, result > 0, kind, detail)

    async def _price_at(self, symbol: str, moment: datetime) -> Decimal | None:
        candles = await self._market.candles(symbol, timeframe="1m", start=moment, limit=1)
        return candles[0].close if candles else None


async def _confidences(
    session: AsyncSession, user_id: uuid.UUID, agent_id: uuid.UUID, now: datetime
) -> dict[uuid.UUID, Decimal]:
    """The confidence of each of the agent's executed buy, sell and rebalance decisions."""
    found: dict[uuid.UUID, Decimal] = {}
    for confidence, order in await decisions_repo.executed_trades(
        session, agent_id, created_until=now
    ):
        if confidence is not None and order.decision_id is not None:
            found[order.decision_id] = confidence
    offset = 0
    while True:
        total, rows = await decisions_repo.page(
            session,
            agent_id,
            user_id=user_id,
            action_taken=ActionTaken.REBALANCE.value,
            limit=_PAGE,
            offset=offset,
        )
        found.update({r.id: r.confidence_score for r in rows if r.confidence_score is not None})
        offset += _PAGE
        if offset >= total or not rows:
            return found


async def _orders_of(session: AsyncSession, user_id: uuid.UUID, agent_id: uuid.UUID) -> list[Order]:
    orders: list[Order] = []
    while True:
        before = (orders[-1].created_at, orders[-1].id) if orders else None
        rows = await orders_repo.keyset_page(
            session, user_id=user_id, agent_id=agent_id, before=before, limit=_PAGE
        )
        orders.extend(rows)
        if len(rows) < _PAGE:
            return orders


async def _fills_of(
    session: AsyncSession, user_id: uuid.UUID, account_ids: set[uuid.UUID]
) -> list[FillRecord]:
    """Every fill of the accounts, whoever placed its order: any sell closes positions."""
    fills: list[FillRecord] = []
    for account_id in account_ids:
        rows: list[Trade] = []
        while True:
            before = (rows[-1].executed_at, rows[-1].id) if rows else None
            page = await trades_repo.keyset_page(
                session, user_id=user_id, account_id=account_id, before=before, limit=_PAGE
            )
            rows.extend(page)
            if len(page) < _PAGE:
                break
        fills.extend(
            FillRecord(
                order_id=t.order_id,
                symbol=t.symbol,
                side="buy" if t.side == OrderSide.BUY.value else "sell",
                quantity=t.quantity,
                price=t.price,
                fee=t.fee,
                executed_at=t.executed_at,
            )
            # Newest first as read; oldest first for the lots (fills of one order share
            # their time, which their ids order).
            for t in sorted(rows, key=lambda t: (t.executed_at, t.id))
        )
    return fills


def call_row(user_id: uuid.UUID, agent_id: uuid.UUID, result: ProviderResult) -> LLMCall:
    """A model call's row, as sent and as received."""
    record = result.to_record()
    return LLMCall(
        id=uuid.uuid4(),
        user_id=user_id,
        agent_id=agent_id,
        provider=result.provider,
        model=result.model,
        request=storable({**result.request, "raw_answers": record["raw_answers"]}),
        raw_response=storable(result.raw_answer),
        parsed=storable(record["decision"]),
        error=storable((record["error"] or {}).get("message")),
        prompt_tokens=result.prompt_tokens or 0,
        completion_tokens=result.completion_tokens or 0,
        # None: unknown (a model without a price), which a budget never takes as free.
        cost=result.cost,
        latency_ms=result.latency_ms,
    )


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


def _move(order: Order, later: Decimal) -> Decimal:
    """The price move per unit in the order's favour, net of its fee per unit: a buy
    gains when `later` is above its average fill plus that fee, a sell when below."""
    with localcontext() as ctx:
        ctx.prec = 40
        fee_per_unit = order.fees / order.filled_quantity
        average = order.average_price or _ZERO
        if order.side == OrderSide.BUY.value:
            return later - (average + fee_per_unit)
        return (average - fee_per_unit) - later


def logged_decision(row: AgentDecision) -> Decision | None:
    """A given decision (an override, a coordination's vote) as it was logged: no model
    call holds it."""
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
