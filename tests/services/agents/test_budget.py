"""An agent cannot overspend: a model of unknown cost is refused or capped by tokens,
a call of unknown cost is never counted as free, and a budget pause lifts itself when
the UTC day rolls over (the service's wall clock set by the test; no sleeps)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from core.config import Settings
from core.exceptions import ValidationFailedError
from database.orm import Agent, AgentDecision, LLMCall
from database.orm.types import utcnow
from main_consolidated import create_app
from models.agents import AgentCreate, AgentStatusRead, AgentUpdate
from models.enums import AgentStatus, DecisionStatus
from models.events import Event
from services.agents.resume import ROLLED_OVER
from services.agents.service import BudgetSpentError
from services.container import Services
from tests.api.conftest import running_app
from tests.llm_server import Reply, ScriptedModel, serve

PRICED = "test-model"
UNPRICED = "mystery-model"  # in neither the built-in table nor LLM_PRICES


def hold() -> dict[str, Any]:
    return {
        "decision_type": "hold",
        "symbol": "BTC/USD",
        "reasoning": "nothing to do",
        "confidence_score": "0.6",
    }


def scripted(name: str, model: str = PRICED, **fields: Any) -> AgentCreate:
    body = {
        "name": name,
        "symbols": ["BTC/USD"],
        "llm_provider": "openai_compatible",
        "llm_model": model,
        **fields,
    }
    return AgentCreate.model_validate(body)


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
                "llm_prices": {PRICED: {"input": "1", "output": "2"}},
            },
            agents={"scheduler_enabled": False, **agents},
        )

    return build


@pytest.fixture
async def services(agent_settings: Callable[..., Settings]) -> AsyncIterator[Services]:
    app = create_app(agent_settings())
    async with running_app(app):
        yield app.state.services


async def calls_of(services: Services, agent_id: uuid.UUID) -> list[LLMCall]:
    async with services.database.database.read() as session:
        query = select(LLMCall).where(LLMCall.agent_id == agent_id)
        return list((await session.execute(query)).scalars())


async def status_of(services: Services, agent_id: uuid.UUID) -> AgentStatusRead:
    statuses = await services.agents.statuses(services.users.solo_user_id)
    return next(s for s in statuses if s.id == agent_id)


async def add_call(services: Services, agent_id: uuid.UUID, *, cost: Decimal | None) -> None:
    """A call made today by the agent, as a provider that stopped reporting cost leaves it."""
    user = services.users.solo_user_id
    async with services.database.database.transaction() as session:
        session.add(
            LLMCall(
                user_id=user,
                agent_id=agent_id,
                provider="openai_compatible",
                model=PRICED,
                request={},
                prompt_tokens=10,
                completion_tokens=5,
                cost=cost,
            )
        )


class TestUnpricedModels:
    async def test_creating_an_agent_on_an_unpriced_model_is_refused(
        self, services: Services
    ) -> None:
        user = services.users.solo_user_id

        with pytest.raises(ValidationFailedError, match="LLM_PRICES") as raised:
            await services.agents.create_agent(user, scripted("Unpriced", UNPRICED))

        assert raised.value.code == "model_unpriced"
        assert raised.value.details == {"provider": "openai_compatible", "model": UNPRICED}
        assert "Unpriced" not in {a.name for a in await services.agents.list_agents(user)}

    async def test_switching_to_an_unpriced_model_is_refused(self, services: Services) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, scripted("Switcher"))

        with pytest.raises(ValidationFailedError, match="daily_token_budget") as raised:
            await services.agents.update_agent(user, created.id, AgentUpdate(llm_model=UNPRICED))

        assert raised.value.code == "model_unpriced"
        assert (await services.agents.get_agent(user, created.id)).llm_model == PRICED

    async def test_starting_an_agent_whose_model_lost_its_price_is_refused(
        self, services: Services
    ) -> None:
        # An agent created before the rule (or whose price was removed from LLM_PRICES).
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, scripted("Legacy"))
        async with services.database.database.transaction() as session:
            row = await session.get(Agent, created.id)
            assert row is not None
            row.llm_model = UNPRICED

        with pytest.raises(ValidationFailedError) as raised:
            await services.agents.start_agent(user, created.id)

        assert raised.value.code == "model_unpriced"
        assert (await services.agents.get_agent(user, created.id)).status is AgentStatus.INACTIVE

    async def test_a_token_budget_admits_an_unpriced_model_and_its_cost_stays_unknown(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(
            user, scripted("Capped", UNPRICED, daily_token_budget=1000)
        )
        await services.agents.start_agent(user, created.id)
        model.script("Capped", Reply(hold()))

        read = await services.agents.execute_decision(user, created.id)

        assert created.daily_token_budget == 1000
        assert read.status is DecisionStatus.SKIPPED
        assert read.cost is None  # unknown, not 0
        assert (read.prompt_tokens, read.completion_tokens) == (100, 20)
        detail = await services.agents.get_decision(user, created.id, read.id)
        assert detail.llm_call is not None
        assert detail.llm_call.cost is None
        [call] = await calls_of(services, created.id)
        assert call.cost is None
        status = await status_of(services, created.id)
        assert (status.cost_today, status.unknown_cost_calls_today) == (Decimal(0), 1)
        assert status.tokens_today == 120


class TestTokenBudget:
    async def test_a_spent_token_budget_pauses_the_agent_until_the_next_utc_midnight(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        now = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)
        services.agents.clock = lambda: now
        created = await services.agents.create_agent(
            user, scripted("Tokens", UNPRICED, daily_token_budget=100)
        )
        await services.agents.start_agent(user, created.id)
        model.script("Tokens", Reply(hold()))
        await services.agents.execute_decision(user, created.id)  # 120 tokens

        with pytest.raises(BudgetSpentError, match="daily token budget of 100 tokens"):
            await services.agents.execute_decision(user, created.id)

        paused = await services.agents.get_agent(user, created.id)
        assert paused.status is AgentStatus.PAUSED
        assert paused.paused_until == datetime(2026, 3, 2, tzinfo=UTC)
        assert model.calls["Tokens"] == 1


class TestUnknownCostToday:
    async def test_a_call_of_unknown_cost_pauses_an_agent_without_a_token_budget(
        self, services: Services, model: ScriptedModel
    ) -> None:
        # The provider stopped reporting cost: unknown is not free, and nothing is asked.
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, scripted("Blind"))
        await services.agents.start_agent(user, created.id)
        await add_call(services, created.id, cost=None)
        model.script("Blind", Reply(hold()))

        with pytest.raises(BudgetSpentError, match="unknown amount"):
            await services.agents.execute_decision(user, created.id)

        paused = await services.agents.get_agent(user, created.id)
        assert paused.status is AgentStatus.PAUSED
        assert paused.status_reason is not None
        assert "LLM_PRICES" in paused.status_reason
        assert paused.paused_until is None  # the next day would not fix it
        assert model.calls["Blind"] == 0

    async def test_with_a_token_budget_a_call_of_unknown_cost_counts_its_tokens(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(
            user, scripted("Counted", daily_token_budget=1000)
        )
        await add_call(services, created.id, cost=None)
        model.script("Counted", Reply(hold()))

        read = await services.agents.execute_decision(user, created.id)

        assert read.status is DecisionStatus.SKIPPED
        assert model.calls["Counted"] == 1


async def pause(services: Services, model: ScriptedModel, name: str) -> uuid.UUID:
    """An active agent paused by its cost budget (0.0001 USD; one call costs 0.00014)."""
    user = services.users.solo_user_id
    created = await services.agents.create_agent(user, scripted(name, daily_cost_budget="0.0001"))
    await services.agents.start_agent(user, created.id)
    model.script(name, Reply(hold()))
    await services.agents.execute_decision(user, created.id)
    with pytest.raises(BudgetSpentError):
        await services.agents.execute_decision(user, created.id)
    return created.id


class TestBudgetWindowRollover:
    async def test_a_budget_pause_lifts_itself_at_the_next_utc_midnight(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        now = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
        services.agents.clock = lambda: now
        agent_id = await pause(services, model, "Nightly")
        events: list[Event] = []
        services.event_bus.subscribe(events.append)

        now = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)
        assert await services.agents.resume_due() == []
        now = datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC)
        resumed = await services.agents.resume_due()

        assert resumed == [agent_id]
        agent = await services.agents.get_agent(user, agent_id)
        assert agent.status is AgentStatus.ACTIVE
        assert agent.status_reason == ROLLED_OVER
        assert agent.paused_until is None
        [changed] = [e.envelope()["data"] for e in events if e.type == "agent_status"]
        assert changed["status"] == "active"
        assert changed["previous_status"] == "paused"
        assert changed["reason"] == ROLLED_OVER
        assert (await status_of(services, agent_id)).next_run_at is not None

    async def test_a_users_stop_wins_over_the_resume(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        services.agents.clock = lambda: now
        agent_id = await pause(services, model, "Stopped")

        await services.agents.stop_agent(user, agent_id)
        now = datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC)

        assert await services.agents.resume_due() == []
        agent = await services.agents.get_agent(user, agent_id)
        assert agent.status is AgentStatus.INACTIVE
        assert agent.paused_until is None

    async def test_a_restart_keeps_the_resume_time(
        self, agent_settings: Callable[..., Settings], model: ScriptedModel
    ) -> None:
        paused_at = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
        first = create_app(agent_settings())
        async with running_app(first):
            services: Services = first.state.services
            user = services.users.solo_user_id
            services.agents.clock = lambda: paused_at
            agent_id = await pause(services, model, "Sleeper")

        second = create_app(agent_settings())
        async with running_app(second):
            services = second.state.services
            services.agents.clock = lambda: paused_at + timedelta(days=1)

            assert await services.agents.resume_due() == [agent_id]
            agent = await services.agents.get_agent(user, agent_id)
            assert agent.status is AgentStatus.ACTIVE


async def test_the_decision_row_records_unknown_cost_as_null(
    services: Services, model: ScriptedModel
) -> None:
    user = services.users.solo_user_id
    created = await services.agents.create_agent(
        user, scripted("Row", UNPRICED, daily_token_budget=500)
    )
    model.script("Row", Reply(hold()))

    read = await services.agents.execute_decision(user, created.id)

    async with services.database.database.read() as session:
        row = await session.get(AgentDecision, read.id)
        assert row is not None
        assert row.cost is None
        assert row.created_at <= utcnow()
