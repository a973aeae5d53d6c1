"""Queries on agents' decision rows (and the orders they placed). Flush, never commit.

Reads of one agent's decisions take the owner's `user_id`, except those given agent
ids the caller has already authorised (`last_decided`, `recent_summaries`,
`executed_trades`: the agents were read as the user's in the same session) and the
writes by a row's primary key (`update_verdict`). `close_interrupted` spans every
user: it is the start-up sweep of rows a stopped service left pending.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from database.orm import AgentDecision, LLMCall, Order
from models.enums import ActionTaken, DecisionStatus

# What a decision summary shows: created_at, decision_type, symbol, side, status,
# confidence_score, reasoning.
SummaryRow = Row[datetime, str | None, str | None, str | None, str, Decimal | None, str]

_SUMMARY_COLUMNS = (
    AgentDecision.created_at,
    AgentDecision.decision_type,
    AgentDecision.symbol,
    AgentDecision.side,
    AgentDecision.status,
    AgentDecision.confidence_score,
    AgentDecision.reasoning,
)

INTERRUPTED_REASON = (
    "interrupted before its order returned (service stopped); "
    "check the agent's orders for one referencing this decision"
)


async def last_decided(
    session: AsyncSession, agent_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, datetime]:
    """When each agent last decided: its newest decision row (absent if it has none).

    By agent ids already authorised (or, at start, every active agent's)."""
    if not agent_ids:
        return {}
    query = (
        select(AgentDecision.agent_id, func.max(AgentDecision.created_at))
        .where(AgentDecision.agent_id.in_(agent_ids))
        .group_by(AgentDecision.agent_id)
    )
    return dict((await session.execute(query)).all())


async def recent_summaries(
    session: AsyncSession, agent_id: uuid.UUID, *, limit: int
) -> list[SummaryRow]:
    """The agent's newest `limit` decisions, newest first, only the columns a summary
    shows (the rows' logged context is large). By an agent id already authorised."""
    query = (
        select(*_SUMMARY_COLUMNS)
        .where(AgentDecision.agent_id == agent_id)
        .order_by(AgentDecision.created_at.desc())
        .limit(limit)
    )
    return list(await session.execute(query))


async def close_interrupted(session: AsyncSession, *, created_before: datetime) -> int:
    """Every user's decisions still pending from before `created_before`, closed as
    errors (internal: the start-up sweep). How many."""
    result = await session.execute(
        update(AgentDecision)
        .where(
            AgentDecision.status == DecisionStatus.PENDING.value,
            AgentDecision.created_at < created_before,
        )
        .values(status=DecisionStatus.ERROR.value, status_reason=INTERRUPTED_REASON)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def stage(session: AsyncSession, row: AgentDecision, call: LLMCall | None) -> None:
    """The decision and its model call added, for the next flush to insert (the
    relationship orders the INSERTs: the call, then the row, then any order)."""
    if call is not None:
        session.add(call)
    session.add(row)


async def insert(session: AsyncSession, row: AgentDecision, call: LLMCall | None) -> None:
    """The decision and its model call inserted now."""
    stage(session, row, call)
    await session.flush()


async def update_verdict(session: AsyncSession, row: AgentDecision) -> None:
    """The stored row closed with `row`'s verdict columns. By its primary key: the
    row was written by this cycle."""
    await session.execute(
        update(AgentDecision)
        .where(AgentDecision.id == row.id)
        .values(
            status=row.status,
            status_reason=row.status_reason,
            action_taken=row.action_taken,
            result=row.result,
            execution_time_ms=row.execution_time_ms,
        )
    )


async def page(
    session: AsyncSession,
    agent_id: uuid.UUID,
    *,
    user_id: uuid.UUID,
    decision_type: str | None = None,
    status: str | None = None,
    symbol: str | None = None,
    action_taken: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int,
    offset: int,
) -> tuple[int, list[AgentDecision]]:
    """(how many match, the page of them newest first) of the user's agent's decisions
    with the filters given; `start` inclusive, `end` exclusive."""
    query = select(AgentDecision).where(
        AgentDecision.agent_id == agent_id, AgentDecision.user_id == user_id
    )
    if decision_type is not None:
        query = query.where(AgentDecision.decision_type == decision_type)
    if status is not None:
        query = query.where(AgentDecision.status == status)
    if symbol is not None:
        query = query.where(AgentDecision.symbol == symbol)
    if action_taken is not None:
        query = query.where(AgentDecision.action_taken == action_taken)
    if start is not None:
        query = query.where(AgentDecision.created_at >= start)
    if end is not None:
        query = query.where(AgentDecision.created_at < end)
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = (
        await session.execute(
            query.order_by(AgentDecision.created_at.desc(), AgentDecision.id.desc())
            .limit(limit)
            .offset(offset)
        )
    ).scalars()
    return total, list(rows)


async def find(
    session: AsyncSession, decision_id: uuid.UUID, *, user_id: uuid.UUID, agent_id: uuid.UUID
) -> AgentDecision | None:
    """The decision by its id, when it is the user's agent's (None otherwise)."""
    row = await session.get(AgentDecision, decision_id)
    if row is None or row.agent_id != agent_id or row.user_id != user_id:
        return None
    return row


async def executed_trades(
    session: AsyncSession, agent_id: uuid.UUID, *, created_until: datetime
) -> list[tuple[Decimal | None, Order]]:
    """The agent's buy and sell decisions decided at or before `created_until`, each
    with its confidence and the order it placed. By an agent id already authorised."""
    query = (
        select(AgentDecision.confidence_score, Order)
        .join(Order, Order.decision_id == AgentDecision.id)
        .where(
            AgentDecision.agent_id == agent_id,
            AgentDecision.action_taken.in_([ActionTaken.BUY.value, ActionTaken.SELL.value]),
            AgentDecision.created_at <= created_until,
        )
    )
    return [(confidence, order) for confidence, order in (await session.execute(query)).all()]
