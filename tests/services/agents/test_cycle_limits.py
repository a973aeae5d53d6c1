"""A cycle that cannot run forever or fail silently: a model that never answers validly
puts its agent in error, a cycle has a deadline shorter than its lock, and a fallback
answers when the agent's model cannot (and the decision says who answered)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from core.config import AgentSettings, Settings
from core.exceptions import ConfigError, ValidationFailedError
from core.service_registry import ServiceStartError
from main_consolidated import create_app
from models.agents import AgentCreate, AgentUpdate, DecisionQuery, FallbackModel
from models.decisions import Decision
from models.enums import AgentStatus, DecisionStatus
from services.container import Services
from tests.api.conftest import running_app
from tests.llm_server import Reply, ScriptedModel, serve

MODEL = "test-model"
GARBAGE = Reply(content="not a decision at all")


def hold() -> dict[str, Any]:
    return {
        "decision_type": "hold",
        "symbol": "BTC/USD",
        "reasoning": "nothing to do",
        "confidence_score": "0.6",
    }


def scripted(name: str, **fields: Any) -> AgentCreate:
    body = {
        "name": name,
        "symbols": ["BTC/USD"],
        "llm_provider": "openai_compatible",
        "llm_model": MODEL,
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
    def build(llm: dict[str, Any] | None = None, **agents: Any) -> Settings:
        return make_settings(
            database={"url": database_url},
            redis={"url": ""},
            market_data={"market_data_stream": False},
            llm={
                "openai_compatible_base_url": base_url,
                "llm_prices": {MODEL: {"input": "1", "output": "2"}},
                **(llm or {}),
            },
            agents={"scheduler_enabled": False, "max_invalid_answers": 3, **agents},
        )

    return build


@pytest.fixture
async def services(agent_settings: Callable[..., Settings]) -> AsyncIterator[Services]:
    app = create_app(agent_settings())
    async with running_app(app):
        yield app.state.services


async def started(services: Services, body: AgentCreate) -> uuid.UUID:
    user = services.users.solo_user_id
    created = await services.agents.create_agent(user, body)
    await services.agents.start_agent(user, created.id)
    return created.id


class TestInvalidAnswers:
    async def test_the_third_invalid_answer_in_a_row_puts_the_agent_in_error(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        agent_id = await started(services, scripted("Babbler"))
        model.script("Babbler", GARBAGE)

        for _ in range(2):
            await services.agents.execute_decision(user, agent_id)
            assert (await services.agents.get_agent(user, agent_id)).status is AgentStatus.ACTIVE
        await services.agents.execute_decision(user, agent_id)

        agent = await services.agents.get_agent(user, agent_id)
        assert agent.status is AgentStatus.ERROR
        assert agent.status_reason is not None
        assert f"openai_compatible/{MODEL}" in agent.status_reason
        assert "3 times in a row" in agent.status_reason
        assert "not valid JSON" in agent.status_reason  # the last problems

    async def test_a_valid_answer_resets_the_count(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        agent_id = await started(services, scripted("Moody"))
        model.script("Moody", GARBAGE, GARBAGE, GARBAGE, GARBAGE, Reply(hold()), GARBAGE)

        # Two invalid decisions (an answer and its repair each), a valid one, an invalid one.
        for _ in range(4):
            await services.agents.execute_decision(user, agent_id)

        assert (await services.agents.get_agent(user, agent_id)).status is AgentStatus.ACTIVE

    async def test_the_count_survives_a_restart(
        self, agent_settings: Callable[..., Settings], model: ScriptedModel
    ) -> None:
        model.script("Stubborn", GARBAGE)
        first = create_app(agent_settings())
        async with running_app(first):
            services: Services = first.state.services
            user = services.users.solo_user_id
            agent_id = await started(services, scripted("Stubborn"))
            for _ in range(2):
                await services.agents.execute_decision(user, agent_id)

        second = create_app(agent_settings())
        async with running_app(second):
            services = second.state.services
            await services.agents.execute_decision(user, agent_id)
            agent = await services.agents.get_agent(user, agent_id)
            assert agent.status is AgentStatus.ERROR


class TestDeadline:
    async def test_a_cycle_past_its_deadline_is_an_error_decision(
        self, agent_settings: Callable[..., Settings], model: ScriptedModel
    ) -> None:
        # Each request times out after 0.4 s and is retried: the retries alone would
        # take longer than the 1 s deadline.
        model.delay = 5  # the model thinking
        app = create_app(agent_settings(llm={"llm_timeout_seconds": 0.4}, cycle_deadline_seconds=1))
        async with running_app(app):
            services: Services = app.state.services
            user = services.users.solo_user_id
            agent_id = await started(services, scripted("Slow"))
            model.script("Slow", Reply(hold()))

            read = await services.agents.execute_decision(user, agent_id)

            assert read.status is DecisionStatus.ERROR
            assert read.status_reason is not None
            assert "deadline of 1 s" in read.status_reason
            assert "waiting for the model" in read.status_reason
            assert read.result["error"]["reason"] == "deadline"
            assert read.cost is None  # the cut-off call may have been billed
            page = await services.agents.list_decisions(user, agent_id, DecisionQuery())
            assert [d.id for d in page.items] == [read.id]
            orders = await services.paper_activity.history(user, agent_id=agent_id)
            assert orders.total == 0
            # The cycle's locks are released: the next one runs.
            model.delay = 0
            again = await services.agents.execute_decision(user, agent_id)
            assert again.status is DecisionStatus.SKIPPED

    async def test_a_deadline_that_cannot_fit_an_answer_and_its_repair_stops_the_start(
        self, agent_settings: Callable[..., Settings]
    ) -> None:
        app = create_app(
            agent_settings(llm={"llm_timeout_seconds": 60}, cycle_deadline_seconds=100)
        )

        with pytest.raises(ServiceStartError, match="AGENT_CYCLE_DEADLINE_SECONDS") as raised:
            async with running_app(app):
                pass

        assert isinstance(raised.value.__cause__, ConfigError)
        assert "LLM_TIMEOUT_SECONDS=60" in str(raised.value)

    def test_the_cycle_lock_outlives_the_deadline(self) -> None:
        for deadline in (1.0, 120.0, 600.0, 3600.0):
            settings = AgentSettings(cycle_deadline_seconds=deadline)
            assert settings.cycle_lock_seconds > deadline


class TestFallbacks:
    async def test_a_fallback_answers_when_the_model_is_down_and_the_decision_says_so(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        agent_id = await started(
            services,
            scripted("Backed", llm_fallbacks=[{"provider": "local", "model": "rule-based"}]),
        )
        model.script("Backed", Reply(status=500))

        read = await services.agents.execute_decision(user, agent_id)

        assert read.status is not DecisionStatus.ERROR
        assert read.answered_by is not None
        assert (read.answered_by.provider, read.answered_by.model) == ("local", "rule-based")
        agent = await services.agents.get_agent(user, agent_id)
        assert [(f.provider, f.model) for f in agent.llm_fallbacks] == [("local", "rule-based")]
        listed = await services.agents.list_decisions(user, agent_id, DecisionQuery())
        assert listed.items[0].answered_by == read.answered_by

    async def test_the_answering_model_is_recorded_without_fallbacks_too(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        agent_id = await started(services, scripted("Plain"))
        model.script("Plain", Reply(hold()))

        read = await services.agents.execute_decision(user, agent_id)

        assert read.answered_by is not None
        assert (read.answered_by.provider, read.answered_by.model) == ("openai_compatible", MODEL)

    async def test_an_override_has_no_answering_model(self, services: Services) -> None:
        user = services.users.solo_user_id
        agent_id = await started(services, scripted("Human"))
        decision = Decision.model_validate(hold())

        read = await services.agents.execute_decision(user, agent_id, decision)

        assert read.answered_by is None

    @pytest.mark.parametrize(
        ("fallback", "code"),
        [
            ({"provider": "acme", "model": "x"}, "llm_provider_config"),
            ({"provider": "openai_compatible", "model": "priceless"}, "model_unpriced"),
            ({"provider": "openai_compatible", "model": MODEL}, "fallback_repeated"),
        ],
    )
    async def test_a_fallback_is_checked_like_the_agents_own_model(
        self, services: Services, fallback: dict[str, str], code: str
    ) -> None:
        user = services.users.solo_user_id

        with pytest.raises(ValidationFailedError) as raised:
            await services.agents.create_agent(user, scripted("Checked", llm_fallbacks=[fallback]))

        assert raised.value.code == code

    async def test_starting_refuses_a_fallback_that_is_not_configured(
        self, services: Services
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(
            user,
            scripted(
                "NoKey",
                llm_fallbacks=[{"provider": "anthropic", "model": "claude-haiku-4-5"}],
            ),
        )

        with pytest.raises(ValidationFailedError, match="ANTHROPIC_API_KEY"):
            await services.agents.start_agent(user, created.id)

    async def test_an_update_replaces_the_chain_and_an_empty_list_removes_it(
        self, services: Services
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, scripted("Chain"))
        local = FallbackModel(provider=" Local ", model="rule-based")

        updated = await services.agents.update_agent(
            user, created.id, AgentUpdate(llm_fallbacks=[local])
        )
        cleared = await services.agents.update_agent(
            user, created.id, AgentUpdate(llm_fallbacks=[])
        )

        assert [(f.provider, f.model) for f in updated.llm_fallbacks] == [("local", "rule-based")]
        assert cleared.llm_fallbacks == []
