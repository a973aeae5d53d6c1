"""Agents end to end: the real services on each database, the market stepped by hand,
and models either the built-in `local` one or the real openai SDK against a scripted
OpenAI-compatible server on 127.0.0.1 (tests/llm_server.py)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from core.config import Settings
from core.exceptions import NotFoundError, ValidationFailedError
from database.orm import (
    AccountBalance,
    AgentDecision,
    LLMCall,
    Order,
    Position,
    TradingAccount,
)
from database.orm.types import utcnow
from main_consolidated import create_app
from models.agents import AgentCreate, CoordinateRequest, DecisionQuery
from models.decisions import Decision
from models.enums import ActionTaken, AgentStatus, DecisionStatus, DecisionTrigger, OrderStatus
from models.events import Event
from services.agents.service import BudgetSpentError
from services.container import Services
from services.infra.cache import LockNotAcquiredError
from tests.api.conftest import running_app
from tests.llm_server import Reply, ScriptedModel, serve

D = Decimal
MODEL = "test-model"


def trade(side: str, *, confidence: str = "0.9", **fields: Any) -> dict[str, Any]:
    sizing = fields if fields else {"fraction_of_equity": "0.05"}
    return {
        "decision_type": "trade",
        "symbol": "BTC/USD",
        "side": side,
        "order_type": None,
        "reasoning": f"{side} because the test says so",
        "confidence_score": confidence,
        **sizing,
    }


def hold(confidence: str = "0.6") -> dict[str, Any]:
    return {
        "decision_type": "hold",
        "symbol": "BTC/USD",
        "reasoning": "nothing to do",
        "confidence_score": confidence,
    }


def risk_check(confidence: str) -> dict[str, Any]:
    return {
        "decision_type": "risk_check",
        "symbol": "BTC/USD",
        "reasoning": "volatility is too high to add risk",
        "confidence_score": confidence,
    }


def agent(name: str, **fields: Any) -> AgentCreate:
    base = {"name": name, "symbols": ["BTC/USD"], "risk_tolerance": "0.5", "llm_provider": "local"}
    return AgentCreate.model_validate({**base, **fields})


@pytest.fixture
def model() -> ScriptedModel:
    return ScriptedModel()


@pytest.fixture
async def base_url(model: ScriptedModel) -> AsyncIterator[str]:
    async with serve(model) as url:
        yield url


@pytest.fixture
def agent_settings(
    make_settings: Callable[..., Settings], database_url: str, base_url: str
) -> Callable[..., Settings]:
    def build(**agents: Any) -> Settings:
        return make_settings(
            database={"url": database_url},
            redis={"url": ""},
            market_data={"market_data_stream": False},
            llm={
                "openai_compatible_base_url": base_url,
                "llm_prices": {MODEL: {"input": "1", "output": "2"}},
            },
            agents={"scheduler_enabled": False, **agents},
        )

    return build


@pytest.fixture
async def services(agent_settings: Callable[..., Settings]) -> AsyncIterator[Services]:
    app = create_app(agent_settings())
    async with running_app(app):
        yield app.state.services


def scripted(name: str, **fields: Any) -> AgentCreate:
    return agent(name, llm_provider="openai_compatible", llm_model=MODEL, **fields)


async def account_of(services: Services, agent_id: uuid.UUID) -> TradingAccount:
    async with services.database.database.read() as session:
        query = select(TradingAccount).where(TradingAccount.agent_id == agent_id)
        return (await session.execute(query)).scalar_one()


async def assert_ledger_reconciles(services: Services, account_id: uuid.UUID) -> None:
    """cash + positions at cost = initial + realized PnL - fees, to the unit."""
    async with services.database.database.read() as session:
        account = await session.get(TradingAccount, account_id)
        assert account is not None
        balances = (
            await session.execute(
                select(AccountBalance).where(AccountBalance.account_id == account_id)
            )
        ).scalars()
        cash = sum((b.free + b.locked for b in balances if b.asset == account.base_currency), D(0))
        positions = (
            await session.execute(select(Position).where(Position.account_id == account_id))
        ).scalars()
        cost = sum((p.cost_basis for p in positions), D(0))
    assert cash + cost == account.initial_balance + account.realized_pnl - account.total_fees


class TestLocalAgent:
    async def test_a_cycle_is_logged_with_its_context_and_model_call(
        self, services: Services
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Rules", personality={}))
        assert created.llm_provider == "local"
        events: list[Event] = []
        services.event_bus.subscribe(events.append)

        read = await services.agents.execute_decision(user, created.id)

        assert read.status in {DecisionStatus.SKIPPED, DecisionStatus.EXECUTED}
        assert read.decision_type is not None
        assert read.reasoning
        assert read.market_data["context"]["symbols"][0]["symbol"] == "BTC/USD"
        assert read.market_data["context"]["symbols"][0]["candles_seen"] == 100
        assert read.market_data["inputs"]["equity"] == "10000"
        detail = await services.agents.get_decision(user, created.id, read.id)
        assert detail.llm_call is not None
        assert detail.llm_call.provider == "local"
        assert detail.llm_call.parsed is not None
        decision_events = [e for e in events if e.type == "agent_decision"]
        assert [e.envelope()["data"]["id"] for e in decision_events] == [str(read.id)]
        run = [e.envelope()["data"]["type"] for e in events if e.channel == f"agent:{created.id}"]
        assert run[0] == "RUN_STARTED"
        assert run[-1] == "RUN_FINISHED"
        assert "TEXT_MESSAGE_CONTENT" in run
        steps = [
            e.envelope()["data"]["stepName"]
            for e in events
            if e.channel == f"agent:{created.id}" and e.envelope()["data"]["type"] == "STEP_STARTED"
        ]
        assert steps[:3] == ["context", "model", "risk_check"]

    async def test_the_replay_reaches_the_same_action(self, services: Services) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Replayed"))
        read = await services.agents.execute_decision(user, created.id)

        replay = await services.agents.replay_decision(user, created.id, read.id)

        assert replay.same_decision
        assert replay.same_action
        assert replay.problems == []


class TestOverride:
    async def test_an_override_trades_on_the_agent_account(self, services: Services) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Human"))
        decision = Decision.model_validate(trade("buy"))

        read = await services.agents.execute_decision(user, created.id, decision)

        assert read.status is DecisionStatus.EXECUTED
        assert read.action_taken is ActionTaken.BUY
        order = read.result["order"]
        assert order["status"] == OrderStatus.FILLED.value
        orders = await services.paper_activity.history(user, agent_id=created.id)
        assert [o.id for o in orders.items] == [uuid.UUID(order["id"])]
        account = await account_of(services, created.id)
        assert orders.items[0].account_id == account.id
        # 5% of 10000 equity at the ask, rounded down to the step.
        assert D(read.quantity or 0) * D(order["average_price"]) <= D(500)
        await assert_ledger_reconciles(services, account.id)
        replay = await services.agents.replay_decision(user, created.id, read.id)
        assert replay.same_action

    async def test_an_order_the_exchange_refuses_leaves_one_rejected_decision(
        self, services: Services
    ) -> None:
        # The decision is written in the order's transaction: when the order fails, the
        # rejection is what is logged, once, and nothing of the order remains.
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Closed"))
        account = await account_of(services, created.id)
        async with services.database.database.transaction() as session:
            row = await session.get(TradingAccount, account.id)
            assert row is not None
            row.is_active = False

        read = await services.agents.execute_decision(
            user, created.id, Decision.model_validate(trade("buy"))
        )

        assert read.status is DecisionStatus.REJECTED
        assert read.status_reason is not None
        assert "the exchange refused: this account is not active" in read.status_reason
        async with services.database.database.read() as session:
            decisions = (
                await session.execute(
                    select(AgentDecision).where(AgentDecision.agent_id == created.id)
                )
            ).scalars()
            assert [d.id for d in decisions] == [read.id]
        orders = await services.paper_activity.history(user, agent_id=created.id)
        assert orders.total == 0
        await assert_ledger_reconciles(services, account.id)

    async def test_a_filled_trade_is_logged_complete_with_its_order(
        self, services: Services
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Filled"))

        read = await services.agents.execute_decision(
            user, created.id, Decision.model_validate(trade("buy"))
        )

        async with services.database.database.read() as session:
            row = await session.get(AgentDecision, read.id)
            order = (
                await session.execute(select(Order).where(Order.decision_id == read.id))
            ).scalar_one()
        assert row is not None
        assert row.status == DecisionStatus.EXECUTED.value
        assert row.result["order"]["id"] == str(order.id)
        assert row.result["order"]["status"] == order.status == OrderStatus.FILLED.value
        assert row.execution_time_ms is not None
        assert order.client_order_id == f"decision-{read.id.hex}"
        await assert_ledger_reconciles(services, order.account_id)

    async def test_a_decision_over_the_risk_limit_is_logged_and_not_executed(
        self, services: Services
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Greedy", max_position_pct="20"))
        decision = Decision.model_validate(trade("buy", fraction_of_equity="0.5"))

        read = await services.agents.execute_decision(user, created.id, decision)

        assert read.status is DecisionStatus.REJECTED
        assert read.action_taken is ActionTaken.NONE
        assert read.status_reason is not None
        assert "over the 20% limit" in read.status_reason
        checks = {c["name"]: c["passed"] for c in read.result["plan"]["risk"]["checks"]}
        assert checks["position_size"] is False
        assert checks["cash"] is True
        orders = await services.paper_activity.history(user, agent_id=created.id)
        assert orders.total == 0

    async def test_a_sell_of_nothing_is_refused_by_risk(self, services: Services) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Shorty"))
        decision = Decision.model_validate(trade("sell", quantity="0.01"))

        read = await services.agents.execute_decision(user, created.id, decision)

        assert read.status is DecisionStatus.REJECTED
        assert "holding" in {c["name"] for c in read.result["plan"]["risk"]["checks"]}


class TestScriptedModel:
    async def test_a_good_answer_executes_and_records_tokens_and_cost(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, scripted("Gpt"))
        model.script("Gpt", Reply(trade("buy")))

        read = await services.agents.execute_decision(user, created.id)

        assert read.status is DecisionStatus.EXECUTED
        assert (read.prompt_tokens, read.completion_tokens) == (100, 20)
        assert read.cost == D("0.00014")  # 100 x 1 + 20 x 2 per million
        detail = await services.agents.get_decision(user, created.id, read.id)
        assert detail.llm_call is not None
        assert detail.llm_call.request["messages"][0]["role"] == "system"
        assert detail.llm_call.raw_response is not None

    async def test_malformed_twice_is_an_error_and_nothing_executes(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, scripted("Broken"))
        model.script("Broken", Reply(content="{not json"), Reply(content="still not json"))

        read = await services.agents.execute_decision(user, created.id)

        assert read.status is DecisionStatus.ERROR
        assert read.decision_type is None
        assert read.action_taken is ActionTaken.NONE
        assert read.status_reason is not None
        assert model.calls["Broken"] == 2  # the answer and one repair
        orders = await services.paper_activity.history(user, agent_id=created.id)
        assert orders.total == 0
        replay = await services.agents.replay_decision(user, created.id, read.id)
        assert replay.replayed_action == "error"
        assert replay.same_action

    async def test_malformed_then_repaired_is_used(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, scripted("Repaired"))
        model.script("Repaired", Reply(content="{oops"), Reply(hold()))

        read = await services.agents.execute_decision(user, created.id)

        assert read.status is DecisionStatus.SKIPPED
        assert read.decision_type is not None
        assert read.decision_type.value == "hold"
        assert model.calls["Repaired"] == 2

    async def test_a_decision_with_nul_in_its_reasoning_is_sent_back_for_repair(
        self, services: Services, model: ScriptedModel
    ) -> None:
        # PostgreSQL stores no NUL; this answer used to fail the cycle (HTTP 500).
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, scripted("Nul"))
        bad = {**hold(), "reasoning": "flat\u0000market"}
        model.script("Nul", Reply(content=json.dumps(bad)), Reply(hold()))

        read = await services.agents.execute_decision(user, created.id)

        assert read.status is DecisionStatus.SKIPPED
        assert read.reasoning == "nothing to do"
        assert model.calls["Nul"] == 2
        assert "NUL character" in json.dumps(model.requests[-1]["messages"][-1])

    async def test_an_answer_holding_nul_is_logged_as_an_error_not_a_crash(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, scripted("Nul2"))
        model.script("Nul2", Reply(content="no\x00json"))

        read = await services.agents.execute_decision(user, created.id)

        assert read.status is DecisionStatus.ERROR
        detail = await services.agents.get_decision(user, created.id, read.id)
        assert detail.llm_call is not None
        assert detail.llm_call.raw_response == "no\ufffdjson"
        listed = await services.agents.list_decisions(user, created.id, DecisionQuery())
        assert [d.id for d in listed.items] == [read.id]

    async def test_a_server_error_is_logged_as_an_error_decision(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, scripted("Down"))
        model.script("Down", Reply(status=500))

        read = await services.agents.execute_decision(user, created.id)

        assert read.status is DecisionStatus.ERROR
        assert read.result["error"]["reason"] == "unavailable"
        assert model.calls["Down"] == 3  # retried with backoff

    async def test_one_agent_never_runs_two_cycles_at_once(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, scripted("Single"))
        model.script("Single", Reply(hold()))
        model.delay = 0.2

        first, second = await asyncio.gather(
            services.agents.execute_decision(user, created.id),
            services.agents.execute_decision(user, created.id),
        )

        assert model.max_in_flight == 1
        assert {first.status, second.status} == {DecisionStatus.SKIPPED}


class TestPersonality:
    async def test_extra_traits_are_kept_and_reach_the_models_prompt(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        personality = {
            "style": "contrarian",
            "aggression": "0.3",
            "patience": "0.4",
            "analysis_depth": "high",
            "max_trades_per_day": 3,
            "likes_round_numbers": True,
            "语气": "谨慎",
        }
        created = await services.agents.create_agent(
            user, scripted("Character", personality=personality)
        )
        model.script("Character", Reply(hold()))

        await services.agents.execute_decision(user, created.id)

        assert created.personality == personality
        assert (await services.agents.get_agent(user, created.id)).personality == personality
        system = model.requests[-1]["messages"][0]["content"]
        assert '"analysis_depth": "high"' in system
        assert '"patience": "0.4"' in system
        assert '"max_trades_per_day": 3' in system
        assert '"likes_round_numbers": true' in system
        assert '"语气": "谨慎"' in system  # as written, not \\u escapes


class TestCostBudget:
    async def test_a_spent_budget_pauses_the_agent(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(
            user, scripted("Spender", daily_cost_budget="0.0001")
        )
        await services.agents.start_agent(user, created.id)
        model.script("Spender", Reply(hold()))
        await services.agents.execute_decision(user, created.id)  # costs 0.00014

        with pytest.raises(BudgetSpentError, match="daily cost budget"):
            await services.agents.execute_decision(user, created.id)

        paused = await services.agents.get_agent(user, created.id)
        assert paused.status is AgentStatus.PAUSED
        assert paused.status_reason is not None
        assert "0.0001" in paused.status_reason
        assert model.calls["Spender"] == 1


class TestCoordination:
    async def test_a_risk_veto_turns_the_majority_buy_into_a_hold(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        bulls = [await services.agents.create_agent(user, scripted(f"Bull{i}")) for i in range(2)]
        bear = await services.agents.create_agent(user, scripted("Careful"))
        for bull in bulls:
            model.script(bull.name, Reply(trade("buy", quantity="0.01")))
        model.script("Careful", Reply(risk_check("0.8")))
        request = CoordinateRequest(
            agent_ids=[bulls[0].id, bulls[1].id, bear.id], symbol="BTC-USD", execute=True
        )

        result = await services.agents.coordinate(user, request)

        assert result.action == "hold"
        assert result.vetoed_by == [str(bear.id)]
        assert len(result.members) == 3
        assert {m.coordination_id for m in result.members} == {result.coordination_id}
        assert result.executed is not None
        assert result.executed.action_taken is ActionTaken.NONE
        assert result.executed.coordination_id == result.coordination_id
        orders = await services.paper_activity.history(user, agent_id=bulls[0].id)
        assert orders.total == 0

    async def test_a_confident_majority_executes_on_the_executor(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        first = await services.agents.create_agent(user, scripted("Buyer"))
        second = await services.agents.create_agent(user, scripted("Agree", max_position_pct="50"))
        third = await services.agents.create_agent(user, scripted("Doubter"))
        model.script("Buyer", Reply(trade("buy", quantity="0.01", confidence="0.9")))
        model.script("Agree", Reply(trade("buy", quantity="0.03", confidence="0.7")))
        model.script("Doubter", Reply(hold("0.4")))
        request = CoordinateRequest(
            agent_ids=[first.id, second.id, third.id],
            symbol="BTC/USD",
            execute=True,
            executor_id=second.id,
        )

        result = await services.agents.coordinate(user, request)

        assert result.action == "buy"
        assert result.quantity == D("0.01875")  # (0.9 x 0.01 + 0.7 x 0.03) / 1.6
        assert result.executed is not None
        assert result.executed.status is DecisionStatus.EXECUTED
        orders = await services.paper_activity.history(user, agent_id=second.id)
        assert orders.total == 1


class TestLifecycle:
    async def test_a_provider_without_its_key_cannot_start(self, services: Services) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(
            user, agent("NoKey", llm_provider="anthropic", llm_model="claude-haiku-4-5")
        )

        with pytest.raises(ValidationFailedError, match="ANTHROPIC_API_KEY") as raised:
            await services.agents.start_agent(user, created.id)

        assert raised.value.details["reason"] == "missing_key"
        still = await services.agents.get_agent(user, created.id)
        assert still.status is AgentStatus.INACTIVE

    async def test_deleting_cancels_open_orders_and_keeps_the_history(
        self, services: Services
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, agent("Leaver"))
        far_below = Decision.model_validate(
            trade("buy", quantity="0.05", order_type="limit", limit_price="1000")
        )
        read = await services.agents.execute_decision(user, created.id, far_below)
        assert read.status is DecisionStatus.EXECUTED, read.status_reason
        assert read.result["order"]["status"] == OrderStatus.PENDING.value

        await services.agents.delete_agent(user, created.id)

        order = await services.paper_trading.get_order(user, uuid.UUID(read.result["order"]["id"]))
        assert order.status is OrderStatus.CANCELLED
        with pytest.raises(NotFoundError):
            await services.agents.get_agent(user, created.id)
        history = await services.agents.list_decisions(user, created.id, DecisionQuery())
        assert [d.id for d in history.items] == [read.id]
        await assert_ledger_reconciles(services, order.account_id)


class TestRestart:
    async def test_active_agents_resume_after_a_restart(
        self, agent_settings: Callable[..., Settings]
    ) -> None:
        first = create_app(agent_settings())
        async with running_app(first):
            services: Services = first.state.services
            user = services.users.solo_user_id
            created = await services.agents.create_agent(user, agent("Phoenix"))
            await services.agents.start_agent(user, created.id)

        second = create_app(agent_settings(scheduler_enabled=True, scheduler_tick_seconds=0.05))
        decided = asyncio.Event()

        def on_event(event: Event) -> None:
            if event.type == "agent_decision" and str(created.id) in event.text:
                decided.set()

        async with running_app(second):
            services = second.state.services
            services.event_bus.subscribe(on_event)
            async with asyncio.timeout(60):
                await decided.wait()
            statuses = {s.id: s for s in await services.agents.statuses(user)}
            assert statuses[created.id].status is AgentStatus.ACTIVE
            assert statuses[created.id].last_decision_at is not None

    async def test_a_resumed_agent_waits_out_the_interval_since_its_last_decision(
        self, agent_settings: Callable[..., Settings]
    ) -> None:
        first = create_app(agent_settings())
        async with running_app(first):
            services: Services = first.state.services
            user = services.users.solo_user_id
            decided = await services.agents.create_agent(
                user, agent("Patient", decision_interval_seconds=3600)
            )
            fresh = await services.agents.create_agent(
                user, agent("Eager", decision_interval_seconds=3600)
            )
            read = await services.agents.execute_decision(user, decided.id)
            for agent_id in (decided.id, fresh.id):
                await services.agents.start_agent(user, agent_id)

        second = create_app(agent_settings())
        async with running_app(second):
            services = second.state.services
            statuses = {s.id: s for s in await services.agents.statuses(user)}
            listed = {a.id: a for a in await services.agents.list_agents(user)}
        now = utcnow()
        patient, eager = statuses[decided.id], statuses[fresh.id]
        assert patient.last_decision_at == read.created_at
        assert listed[decided.id].last_decision_at == read.created_at
        assert patient.next_run_at is not None
        assert patient.next_run_at > now + timedelta(seconds=3500)
        assert eager.last_decision_at is None
        assert eager.next_run_at is not None
        assert eager.next_run_at <= now

    async def test_a_scheduled_cycle_skips_an_agent_that_decided_recently(
        self, services: Services
    ) -> None:
        # What keeps a second instance from running a cycle the first just ran.
        user = services.users.solo_user_id
        created = await services.agents.create_agent(
            user, agent("Busy", decision_interval_seconds=3600)
        )
        await services.agents.execute_decision(user, created.id)

        with pytest.raises(LockNotAcquiredError, match="decided recently"):
            await services.agents._cycle(user, created.id, DecisionTrigger.SCHEDULED)
        page = await services.agents.list_decisions(user, created.id, DecisionQuery())
        assert page.total == 1

    async def test_an_interrupted_pending_decision_is_closed_as_an_error(
        self, agent_settings: Callable[..., Settings]
    ) -> None:
        first = create_app(agent_settings())
        async with running_app(first):
            services: Services = first.state.services
            user = services.users.solo_user_id
            created = await services.agents.create_agent(user, agent("Crashed"))
            read = await services.agents.execute_decision(user, created.id)
            async with services.database.database.transaction() as session:
                row = await session.get(AgentDecision, read.id)
                assert row is not None
                row.status = DecisionStatus.PENDING.value
                row.created_at = row.created_at.replace(year=row.created_at.year - 1)

        second = create_app(agent_settings())
        async with running_app(second):
            services = second.state.services
            detail = await services.agents.get_decision(user, created.id, read.id)
            assert detail.status is DecisionStatus.ERROR
            assert detail.status_reason is not None
            assert "interrupted" in detail.status_reason


async def test_model_calls_are_stored_for_every_cycle(
    services: Services, model: ScriptedModel
) -> None:
    user = services.users.solo_user_id
    created = await services.agents.create_agent(user, scripted("Counted"))
    model.script("Counted", Reply(hold()), Reply(status=500), Reply(hold()))
    for _ in range(2):
        await services.agents.execute_decision(user, created.id)
    async with services.database.database.read() as session:
        calls = (
            await session.execute(select(LLMCall).where(LLMCall.agent_id == created.id))
        ).scalars()
        assert len(list(calls)) == 2


class TestCalibration:
    async def test_an_executed_trade_is_judged_a_horizon_later(
        self, agent_settings: Callable[..., Settings]
    ) -> None:
        app = create_app(agent_settings(calibration_horizon_seconds=3600))
        async with running_app(app):
            services: Services = app.state.services
            user = services.users.solo_user_id
            created = await services.agents.create_agent(user, agent("Judged"))
            decision = Decision.model_validate(trade("buy", confidence="0.8"))
            read = await services.agents.execute_decision(user, created.id, decision)
            fresh = await services.agents.calibration(user, created.id)
            assert fresh.trades == 0  # its hour has not passed

            # Move the trade a day back: its outcome is the close an hour after it.
            order_id = uuid.UUID(read.result["order"]["id"])
            async with services.database.database.transaction() as session:
                row = await session.get(AgentDecision, read.id)
                order = await session.get(Order, order_id)
                assert row is not None
                assert order is not None
                row.created_at = row.created_at - timedelta(days=1)
                order.created_at = order.created_at - timedelta(days=1)
                moment = order.created_at + timedelta(hours=1)
                average = order.average_price or D(0)
                fee_per_unit = order.fees / order.filled_quantity
            later = await services.market_data.candles(
                "BTC/USD", timeframe="1m", start=moment, limit=1
            )

            judged = await services.agents.calibration(user, created.id)

            assert judged.trades == 1
            assert judged.wins == (1 if later[0].close > average + fee_per_unit else 0)
            bucket = next(b for b in judged.buckets if b.low == D("0.8"))
            assert bucket.trades == 1
