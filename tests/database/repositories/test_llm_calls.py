"""database/repositories/llm_calls.py on both databases: today's spend, a call by id."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from database.connection import Database
from database.orm import Agent, LLMCall
from database.orm.types import utcnow
from database.repositories import llm_calls
from services.agents.context import utc_midnight
from tests.factories import create_agent, create_llm_call


async def _call_at(db: Database, agent: Agent, cost: str, hours_ago: int) -> None:
    async with db.transaction() as session:
        session.add(
            LLMCall(
                user_id=agent.user_id,
                agent_id=agent.id,
                provider="local",
                model="rule-based",
                request={},
                cost=Decimal(cost),
                created_at=utcnow() - timedelta(hours=hours_ago),
            )
        )


class TestCostSince:
    async def test_sums_the_agents_calls_from_the_moment_on_exactly(self, db: Database) -> None:
        agent, other = await create_agent(db), await create_agent(db)
        await create_llm_call(db, agent=agent, cost="0.0000001")
        await create_llm_call(db, agent=agent, cost="0.1")
        await create_llm_call(db, agent=other, cost="5")
        await _call_at(db, agent, "7", hours_ago=48)
        async with db.read() as session:
            spent = await llm_calls.cost_since(session, agent.id, since=utc_midnight(utcnow()))
        assert spent == Decimal("0.1000001")

    async def test_nothing_spent_is_an_exact_zero(self, db: Database) -> None:
        agent = await create_agent(db)
        async with db.read() as session:
            spent = await llm_calls.cost_since(session, agent.id, since=utc_midnight(utcnow()))
        assert spent == Decimal(0)
        assert isinstance(spent, Decimal)


class TestFind:
    async def test_by_id(self, db: Database) -> None:
        agent = await create_agent(db)
        call = await create_llm_call(db, agent=agent)
        async with db.read() as session:
            found = await llm_calls.find(session, call.id)
            assert found is not None
            assert found.agent_id == agent.id
            assert await llm_calls.find(session, uuid.uuid4()) is None
