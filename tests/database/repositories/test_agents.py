"""database/repositories/agents.py on both databases: what the agent service relies on."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

import pytest

from core.exceptions import NotFoundError
from database.connection import Database
from database.orm import Agent, TradingAccount
from database.orm.types import utcnow
from database.repositories import agents
from tests.factories import create_account, create_agent, create_user


async def _agent_with_account(
    db: Database, user_id: uuid.UUID, *, deleted_at: datetime | None = None
) -> tuple[Agent, TradingAccount]:
    agent = await create_agent(db, user_id=user_id, deleted_at=deleted_at)
    account = await create_account(db, user_id=user_id, agent_id=agent.id)
    return agent, account


class TestFindOwned:
    async def test_the_users_agent_comes_with_its_account(self, db: Database) -> None:
        user = await create_user(db)
        agent, account = await _agent_with_account(db, user.id)
        async with db.read() as session:
            found, found_account = await agents.find_owned(session, agent.id, user_id=user.id)
        assert (found.id, found_account.id) == (agent.id, account.id)

    async def test_another_users_agent_is_not_found(self, db: Database) -> None:
        owner, other = await create_user(db), await create_user(db)
        agent, _ = await _agent_with_account(db, owner.id)
        async with db.read() as session:
            with pytest.raises(NotFoundError, match=str(agent.id)):
                await agents.find_owned(session, agent.id, user_id=other.id)

    async def test_a_deleted_agent_is_not_found_but_still_exists(self, db: Database) -> None:
        user = await create_user(db)
        agent, _ = await _agent_with_account(db, user.id, deleted_at=utcnow())
        async with db.read() as session:
            with pytest.raises(NotFoundError):
                await agents.find_owned(session, agent.id, user_id=user.id)
            assert await agents.exists(session, agent.id, user_id=user.id)

    async def test_exists_is_scoped_to_the_user(self, db: Database) -> None:
        owner, other = await create_user(db), await create_user(db)
        agent, _ = await _agent_with_account(db, owner.id)
        async with db.read() as session:
            assert not await agents.exists(session, agent.id, user_id=other.id)
            assert not await agents.exists(session, uuid.uuid4(), user_id=owner.id)


class TestListing:
    async def test_live_agents_are_the_users_oldest_first_without_deleted(
        self, db: Database
    ) -> None:
        user, other = await create_user(db), await create_user(db)
        first, _ = await _agent_with_account(db, user.id)
        second, _ = await _agent_with_account(db, user.id)
        await _agent_with_account(db, user.id, deleted_at=utcnow())
        await _agent_with_account(db, other.id)
        async with db.read() as session:
            rows = await agents.live_agents(session, user_id=user.id)
        assert [(a.id, acc.agent_id) for a, acc in rows] == [
            (first.id, first.id),
            (second.id, second.id),
        ]

    async def test_active_agents_span_users_and_skip_the_others(self, db: Database) -> None:
        one, two = await create_user(db), await create_user(db)
        a = await create_agent(db, user_id=one.id, status="active")
        b = await create_agent(db, user_id=two.id, status="active")
        await create_agent(db, user_id=one.id, status="inactive")
        await create_agent(db, user_id=two.id, status="inactive", deleted_at=utcnow())
        async with db.read() as session:
            active = await agents.active_agents(session)
        assert {agent.id for agent in active} == {a.id, b.id}


class TestNames:
    async def test_a_name_is_taken_among_the_users_live_agents_only(self, db: Database) -> None:
        user, other = await create_user(db), await create_user(db)
        agent = await create_agent(db, user_id=user.id, name="Alpha")
        await create_agent(db, user_id=user.id, name="Gone", deleted_at=utcnow())
        async with db.read() as session:
            assert await agents.name_taken(session, "Alpha", user_id=user.id)
            assert not await agents.name_taken(session, "Alpha", user_id=other.id)
            assert not await agents.name_taken(session, "Gone", user_id=user.id)
            assert not await agents.name_taken(
                session, "Alpha", user_id=user.id, except_agent_id=agent.id
            )

    async def test_add_flushes_so_an_account_can_reference_it(self, db: Database) -> None:
        user = await create_user(db)
        agent = Agent(
            id=uuid.uuid4(),
            user_id=user.id,
            name="New",
            status="inactive",
            personality={},
            strategies=[],
            symbols=["BTC/USD"],
            paper_balance=Decimal(1000),
            risk_tolerance=Decimal("0.5"),
            max_position_pct=Decimal(10),
            llm_provider="local",
            llm_model="rule-based",
            decision_interval_seconds=60,
            daily_cost_budget=Decimal(1),
        )
        async with db.transaction() as session:
            await agents.add(session, agent)
            assert await agents.name_taken(session, "New", user_id=user.id)
