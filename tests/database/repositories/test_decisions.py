"""database/repositories/decisions.py on both databases: the decision log's queries."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from database.connection import Database
from database.orm import Agent, AgentDecision, LLMCall, Order, TradingAccount
from database.orm.types import utcnow
from database.repositories import decisions
from tests.factories import create_account, create_agent, create_order, create_user


def _row(
    agent: Agent,
    *,
    created_at: datetime | None = None,
    status: str = "executed",
    decision_type: str | None = "trade",
    symbol: str | None = "BTC/USD",
    action_taken: str | None = "none",
    confidence: str | None = "0.6",
    reasoning: str = "because",
) -> AgentDecision:
    return AgentDecision(
        id=uuid.uuid4(),
        user_id=agent.user_id,
        agent_id=agent.id,
        trigger="scheduled",
        status=status,
        decision_type=decision_type,
        symbol=symbol,
        side="buy" if decision_type == "trade" else None,
        action_taken=action_taken,
        confidence_score=Decimal(confidence) if confidence is not None else None,
        reasoning=reasoning,
        market_data={},
        result={},
        created_at=created_at or utcnow(),
    )


async def _decision(db: Database, agent: Agent, **fields: object) -> AgentDecision:
    row = _row(agent, **fields)  # type: ignore[arg-type]
    async with db.transaction() as session:
        session.add(row)
    return row


def _ago(minutes: int) -> datetime:
    return utcnow() - timedelta(minutes=minutes)


class TestLastDecided:
    async def test_each_agents_newest_decision_and_none_for_an_agent_without(
        self, db: Database
    ) -> None:
        one, two, idle = await create_agent(db), await create_agent(db), await create_agent(db)
        await _decision(db, one, created_at=_ago(30))
        newest = await _decision(db, one, created_at=_ago(5))
        only = await _decision(db, two, created_at=_ago(60))
        async with db.read() as session:
            decided = await decisions.last_decided(session, [one.id, two.id, idle.id])
            assert await decisions.last_decided(session, []) == {}
        assert decided == {one.id: newest.created_at, two.id: only.created_at}


class TestRecentSummaries:
    async def test_the_agents_newest_first_limited(self, db: Database) -> None:
        agent, other = await create_agent(db), await create_agent(db)
        for minutes in (50, 10, 30, 40):
            await _decision(db, agent, created_at=_ago(minutes), reasoning=f"{minutes} ago")
        await _decision(db, other, created_at=_ago(1))
        async with db.read() as session:
            rows = await decisions.recent_summaries(session, agent.id, limit=3)
        assert [r.reasoning for r in rows] == ["10 ago", "30 ago", "40 ago"]
        assert rows[0].confidence_score == Decimal("0.6")
        assert (rows[0].decision_type, rows[0].symbol, rows[0].side) == ("trade", "BTC/USD", "buy")


class TestWrites:
    async def test_insert_writes_the_call_before_the_row_that_references_it(
        self, db: Database
    ) -> None:
        agent = await create_agent(db)
        call = LLMCall(
            id=uuid.uuid4(),
            user_id=agent.user_id,
            agent_id=agent.id,
            provider="local",
            model="rule-based",
            request={},
            cost=Decimal("0.01"),
        )
        row = _row(agent, status="pending", action_taken=None)
        row.llm_call_id = call.id
        async with db.transaction() as session:
            await decisions.insert(session, row, call)
        async with db.read() as session:
            found = await decisions.find(session, row.id, user_id=agent.user_id, agent_id=agent.id)
            assert found is not None
            assert found.llm_call_id == call.id

    async def test_update_verdict_closes_only_that_row(self, db: Database) -> None:
        agent = await create_agent(db)
        row = await _decision(db, agent, status="pending", action_taken=None)
        untouched = await _decision(db, agent, status="pending", action_taken=None)
        row.status, row.status_reason, row.action_taken = "executed", "filled", "buy"
        row.result, row.execution_time_ms = {"order": "x"}, 12
        async with db.transaction() as session:
            await decisions.update_verdict(session, row)
        async with db.read() as session:
            total, rows = await decisions.page(
                session, agent.id, user_id=agent.user_id, limit=10, offset=0
            )
        by_id = {r.id: r for r in rows}
        assert total == 2
        closed = by_id[row.id]
        assert (closed.status, closed.status_reason, closed.action_taken) == (
            "executed",
            "filled",
            "buy",
        )
        assert (closed.result, closed.execution_time_ms) == ({"order": "x"}, 12)
        assert by_id[untouched.id].status == "pending"

    async def test_close_interrupted_closes_old_pending_rows_of_every_user(
        self, db: Database
    ) -> None:
        one, two = await create_agent(db), await create_agent(db)
        old_one = await _decision(db, one, status="pending", created_at=_ago(10))
        old_two = await _decision(db, two, status="pending", created_at=_ago(10))
        fresh = await _decision(db, one, status="pending", created_at=_ago(0))
        done = await _decision(db, one, status="executed", created_at=_ago(10))
        async with db.transaction() as session:
            closed = await decisions.close_interrupted(session, created_before=_ago(2))
        assert closed == 2
        async with db.read() as session:
            for row, status in ((old_one, "error"), (old_two, "error"), (fresh, "pending")):
                found = await decisions.find(
                    session, row.id, user_id=row.user_id, agent_id=row.agent_id
                )
                assert found is not None
                assert found.status == status
                if status == "error":
                    assert found.status_reason == decisions.INTERRUPTED_REASON
            kept = await decisions.find(session, done.id, user_id=one.user_id, agent_id=one.id)
            assert kept is not None
            assert kept.status == "executed"


class TestPage:
    async def test_newest_first_with_total_limit_and_offset(self, db: Database) -> None:
        agent = await create_agent(db)
        same_moment = _ago(20)
        made = [
            await _decision(db, agent, created_at=_ago(30)),
            await _decision(db, agent, created_at=same_moment),
            await _decision(db, agent, created_at=same_moment),
            await _decision(db, agent, created_at=_ago(10)),
        ]
        async with db.read() as session:
            total, rows = await decisions.page(
                session, agent.id, user_id=agent.user_id, limit=2, offset=1
            )
        tied = sorted((made[1].id, made[2].id), reverse=True)  # ties: the id, descending
        assert total == 4
        assert [r.id for r in rows] == tied

    async def test_another_users_rows_are_excluded(self, db: Database) -> None:
        agent, intruder = await create_agent(db), await create_user(db)
        await _decision(db, agent)
        async with db.read() as session:
            total, rows = await decisions.page(
                session, agent.id, user_id=intruder.id, limit=10, offset=0
            )
        assert (total, rows) == (0, [])

    async def test_filters_combine(self, db: Database) -> None:
        agent = await create_agent(db)
        wanted = await _decision(db, agent, action_taken="buy", created_at=_ago(30))
        await _decision(db, agent, action_taken="buy", symbol="ETH/USD", created_at=_ago(30))
        await _decision(db, agent, action_taken="none", created_at=_ago(30))
        await _decision(db, agent, action_taken="buy", created_at=_ago(90))
        await _decision(db, agent, status="error", decision_type=None, created_at=_ago(30))
        async with db.read() as session:
            total, rows = await decisions.page(
                session,
                agent.id,
                user_id=agent.user_id,
                decision_type="trade",
                status="executed",
                symbol="BTC/USD",
                action_taken="buy",
                start=_ago(60),
                end=_ago(0),
                limit=10,
                offset=0,
            )
        assert (total, [r.id for r in rows]) == (1, [wanted.id])


class TestFind:
    async def test_only_as_the_agents_and_the_users(self, db: Database) -> None:
        agent, sibling = await create_agent(db), await create_agent(db)
        row = await _decision(db, agent)
        async with db.read() as session:
            assert await decisions.find(session, row.id, user_id=agent.user_id, agent_id=agent.id)
            assert (
                await decisions.find(session, row.id, user_id=sibling.user_id, agent_id=agent.id)
                is None
            )
            assert (
                await decisions.find(session, row.id, user_id=agent.user_id, agent_id=sibling.id)
                is None
            )


async def _order_for(db: Database, account: TradingAccount, decision: AgentDecision) -> Order:
    order = await create_order(
        db, account=account, status="filled", filled_quantity="0.01", average_price="100"
    )
    async with db.transaction() as session:
        stored = await session.get(Order, order.id)
        assert stored is not None
        stored.decision_id = decision.id
    return order


class TestExecutedTrades:
    async def test_buys_and_sells_old_enough_with_their_orders(self, db: Database) -> None:
        agent = await create_agent(db)
        account = await create_account(db, user_id=agent.user_id, agent_id=agent.id)
        buy = await _decision(db, agent, action_taken="buy", confidence="0.8", created_at=_ago(90))
        sell = await _decision(db, agent, action_taken="sell", confidence=None, created_at=_ago(90))
        recent = await _decision(db, agent, action_taken="buy", created_at=_ago(1))
        hold = await _decision(db, agent, action_taken="none", created_at=_ago(90))
        orders = {}
        for row in (buy, sell, recent, hold):
            orders[row.id] = await _order_for(db, account, row)
        await _decision(db, agent, action_taken="buy", created_at=_ago(90))  # no order
        async with db.read() as session:
            rows = await decisions.executed_trades(session, agent.id, created_until=_ago(60))
        got = {(confidence, order.id) for confidence, order in rows}
        assert got == {(Decimal("0.8"), orders[buy.id].id), (None, orders[sell.id].id)}
