"""database/repositories/llm_calls.py on both databases: today's spend and tokens, a call by id."""

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


async def _call_at(db: Database, agent: Agent, cost: str | None, hours_ago: int) -> None:
    async with db.transaction() as session:
        session.add(
            LLMCall(
                user_id=agent.user_id,
                agent_id=agent.id,
                provider="local",
                model="rule-based",
                request={},
                cost=Decimal(cost) if cost is not None else None,
                created_at=utcnow() - timedelta(hours=hours_ago),
            )
        )


class TestUsageSince:
    async def test_sums_the_agents_calls_from_the_moment_on_exactly(self, db: Database) -> None:
        agent, other = await create_agent(db), await create_agent(db)
        await create_llm_call(db, agent=agent, cost="0.0000001")
        await create_llm_call(db, agent=agent, cost="0.1")
        await create_llm_call(db, agent=other, cost="5")
        await _call_at(db, agent, "7", hours_ago=48)
        async with db.read() as session:
            usage = await llm_calls.usage_since(session, agent.id, since=utc_midnight(utcnow()))
        assert usage.cost == Decimal("0.1000001")
        assert usage.tokens == 240  # 2 x (100 + 20)
        assert usage.unknown_cost_calls == 0

    async def test_nothing_spent_is_an_exact_zero(self, db: Database) -> None:
        agent = await create_agent(db)
        async with db.read() as session:
            usage = await llm_calls.usage_since(session, agent.id, since=utc_midnight(utcnow()))
        assert usage.cost == Decimal(0)
        assert isinstance(usage.cost, Decimal)
        assert (usage.tokens, usage.unknown_cost_calls) == (0, 0)

    async def test_a_call_of_unknown_cost_is_counted_apart_never_as_zero(
        self, db: Database
    ) -> None:
        agent = await create_agent(db)
        await create_llm_call(db, agent=agent, cost="0.25")
        await _call_at(db, agent, None, hours_ago=0)
        async with db.read() as session:
            usage = await llm_calls.usage_since(session, agent.id, since=utc_midnight(utcnow()))
        assert usage.cost == Decimal("0.25")
        assert usage.unknown_cost_calls == 1


class TestFind:
    async def test_by_id(self, db: Database) -> None:
        agent = await create_agent(db)
        call = await create_llm_call(db, agent=agent)
        async with db.read() as session:
            found = await llm_calls.find(session, call.id)
            assert found is not None
            assert found.agent_id == agent.id
            assert await llm_calls.find(session, uuid.uuid4()) is None
