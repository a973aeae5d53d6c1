"""Replaying a decision: the local rules re-run, or the stored prompt re-asked of a model
(the real openai SDK against the scripted server in tests/llm_server.py), on the
decision's stored context and inputs, and every difference reported."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest

from core.config import Settings
from core.exceptions import ValidationFailedError
from main_consolidated import create_app
from models.agents import AgentCreate
from models.decisions import AgentContext, Decision
from models.replay import ReplayRequest
from services.agents.cycle import BudgetSpentError
from services.container import Services
from services.llm.providers import local
from tests.api.conftest import running_app
from tests.llm_server import Reply, ScriptedModel, serve

D = Decimal
MODEL = "test-model"


def buy(confidence: str = "0.9") -> dict[str, Any]:
    return {
        "decision_type": "trade",
        "symbol": "BTC/USD",
        "side": "buy",
        "order_type": None,
        "fraction_of_equity": "0.05",
        "reasoning": "buy because the test says so",
        "confidence_score": confidence,
    }


def hold() -> dict[str, Any]:
    return {
        "decision_type": "hold",
        "symbol": "BTC/USD",
        "reasoning": "nothing to do",
        "confidence_score": "0.6",
    }


def rules_agent(name: str) -> AgentCreate:
    return AgentCreate.model_validate(
        {"name": name, "symbols": ["BTC/USD"], "risk_tolerance": "0.5", "llm_provider": "local"}
    )


def model_agent(name: str) -> AgentCreate:
    return AgentCreate.model_validate(
        {
            "name": name,
            "symbols": ["BTC/USD"],
            "risk_tolerance": "0.5",
            "llm_provider": "openai_compatible",
            "llm_model": MODEL,
        }
    )


@pytest.fixture
def model() -> ScriptedModel:
    return ScriptedModel()


@pytest.fixture
async def services(
    make_settings: Callable[..., Settings], database_url: str, model: ScriptedModel
) -> AsyncIterator[Services]:
    async with serve(model) as url:
        settings = make_settings(
            database={"url": database_url},
            redis={"url": ""},
            market_data={"market_data_stream": False},
            llm={
                "openai_compatible_base_url": url,
                "llm_prices": {
                    MODEL: {"input": "1", "output": "2"},
                    "other-model": {"input": "0", "output": "0"},
                },
            },
            agents={"scheduler_enabled": False},
        )
        app = create_app(settings)
        async with running_app(app):
            yield app.state.services


class TestRulesReplay:
    async def test_an_unchanged_rule_gives_no_difference(self, services: Services) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, rules_agent("Rules"))
        read = await services.agents.execute_decision(user, created.id)

        replay = await services.agents.replay_decision(user, created.id, read.id)

        assert (replay.mode, replay.provider) == ("rules", "local")
        assert replay.differences == []
        assert replay.same_decision
        assert replay.same_action
        assert replay.same_prompt is None
        assert replay.problems == []
        assert replay.cost == 0

    async def test_the_decision_keeps_every_candle_it_saw(self, services: Services) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, rules_agent("Keeper"))

        read = await services.agents.execute_decision(user, created.id)

        symbol = read.market_data["context"]["symbols"][0]
        assert symbol["candles_seen"] == 100
        assert len(symbol["candles"]) == 100

    async def test_a_changed_rule_shows_as_a_difference(
        self, services: Services, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, rules_agent("Changed"))
        read = await services.agents.execute_decision(user, created.id)
        rules = local.decide_by_rules

        def doubting(context: AgentContext) -> tuple[Decision, dict[str, Any]]:
            decision, record = rules(context)
            return decision.model_copy(update={"confidence_score": D("0.01")}), record

        monkeypatch.setattr(local, "decide_by_rules", doubting)

        replay = await services.agents.replay_decision(user, created.id, read.id)

        assert not replay.same_decision
        changed = {d.field: d for d in replay.differences}
        assert changed["confidence_score"].replayed == "0.01"
        assert changed["confidence_score"].logged == str(read.confidence_score)

    async def test_the_local_rules_have_no_other_model(self, services: Services) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, rules_agent("OneModel"))
        read = await services.agents.execute_decision(user, created.id)

        with pytest.raises(ValidationFailedError, match="local provider has one model"):
            await services.agents.replay_decision(
                user, created.id, read.id, ReplayRequest(model="gpt-4o")
            )


class TestModelReplay:
    async def test_the_same_answer_gives_no_difference_and_places_nothing(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, model_agent("Steady"))
        model.script("Steady", Reply(buy()))
        read = await services.agents.execute_decision(user, created.id)
        detail = await services.agents.get_decision(user, created.id, read.id)
        assert detail.llm_call is not None

        replay = await services.agents.replay_decision(user, created.id, read.id)

        assert (replay.mode, replay.provider, replay.model) == ("model", "openai_compatible", MODEL)
        assert model.calls["Steady"] == 2  # asked again, not re-parsed
        assert replay.same_prompt is True
        assert model.requests[1]["messages"][:2] == model.requests[0]["messages"][:2]
        assert replay.differences == []
        assert (replay.same_decision, replay.same_action) == (True, True)
        # The same tokens at the same prices: the replay costs what the decision did.
        assert replay.cost is not None
        assert replay.cost > 0
        assert replay.cost == detail.llm_call.cost
        assert (replay.prompt_tokens, replay.completion_tokens) == (100, 20)
        orders = await services.paper_activity.history(user, agent_id=created.id)
        assert orders.total == 1

    async def test_a_different_answer_shows_field_by_field(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, model_agent("Fickle"))
        model.script("Fickle", Reply(buy()), Reply(hold()))
        read = await services.agents.execute_decision(user, created.id)

        replay = await services.agents.replay_decision(user, created.id, read.id)

        assert not replay.same_decision
        assert not replay.same_action
        changed = {d.field: (d.logged, d.replayed) for d in replay.differences}
        assert changed["decision_type"] == ("trade", "hold")
        assert changed["side"] == ("buy", None)
        assert changed["fraction_of_equity"] == ("0.05", None)
        assert changed["confidence_score"] == ("0.9", "0.6")
        assert changed["action"] == ("buy", "none")
        assert changed["risk.approved"] == (True, None)
        assert (replay.logged_action, replay.replayed_action) == ("buy", "none")

    async def test_a_chosen_model_is_asked_the_same_prompt(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, model_agent("Compared"))
        model.script("Compared", Reply(buy()))
        read = await services.agents.execute_decision(user, created.id)

        replay = await services.agents.replay_decision(
            user, created.id, read.id, ReplayRequest(model="other-model")
        )

        assert replay.model == "other-model"
        assert model.requests[-1]["model"] == "other-model"
        assert replay.same_prompt is True
        assert replay.cost == 0  # priced at zero in this test's LLM_PRICES

    async def test_a_replay_is_on_the_agents_bill(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, model_agent("Billed"))
        model.script("Billed", Reply(buy()))
        read = await services.agents.execute_decision(user, created.id)
        before = next(s for s in await services.agents.statuses(user) if s.id == created.id)

        replay = await services.agents.replay_decision(user, created.id, read.id)

        after = next(s for s in await services.agents.statuses(user) if s.id == created.id)
        assert replay.cost is not None
        assert replay.cost > 0
        assert after.cost_today == before.cost_today + replay.cost

    async def test_a_replay_is_refused_once_the_budget_is_spent(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(
            user, model_agent("Broke").model_copy(update={"daily_cost_budget": Decimal("1E-9")})
        )
        model.script("Broke", Reply(buy()))
        read = await services.agents.execute_decision(user, created.id)
        asked = model.calls["Broke"]

        with pytest.raises(BudgetSpentError, match="replay refused: daily cost budget"):
            await services.agents.replay_decision(user, created.id, read.id)
        assert model.calls["Broke"] == asked  # nothing asked

    async def test_a_replay_on_an_unpriced_model_is_refused(
        self, services: Services, model: ScriptedModel
    ) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, model_agent("Unpriced"))
        model.script("Unpriced", Reply(buy()))
        read = await services.agents.execute_decision(user, created.id)

        with pytest.raises(ValidationFailedError, match="LLM_PRICES") as refused:
            await services.agents.replay_decision(
                user, created.id, read.id, ReplayRequest(model="nobody-priced-this")
            )
        assert refused.value.code == "model_unpriced"

    async def test_a_failed_replay_says_why(self, services: Services, model: ScriptedModel) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, model_agent("Gone"))
        model.script("Gone", Reply(buy()), Reply(status=400))
        read = await services.agents.execute_decision(user, created.id)

        replay = await services.agents.replay_decision(user, created.id, read.id)

        assert replay.replayed_action == "error"
        assert replay.replayed_decision is None
        assert len(replay.problems) == 1
        assert replay.problems[0].startswith("the replay got no decision")
        assert {d.field for d in replay.differences} >= {"decision_type", "action"}


class TestGivenReplay:
    async def test_an_override_is_re_planned_as_logged(self, services: Services) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, rules_agent("Human"))
        decision = Decision.model_validate(buy())
        read = await services.agents.execute_decision(user, created.id, decision)

        replay = await services.agents.replay_decision(user, created.id, read.id)

        assert (replay.mode, replay.provider) == ("given", None)
        assert replay.differences == []
        assert replay.same_action

    async def test_an_override_has_no_prompt_to_re_ask(self, services: Services) -> None:
        user = services.users.solo_user_id
        created = await services.agents.create_agent(user, rules_agent("Overridden"))
        read = await services.agents.execute_decision(
            user, created.id, Decision.model_validate(buy())
        )

        with pytest.raises(ValidationFailedError, match="no prompt to re-ask") as caught:
            await services.agents.replay_decision(
                user, created.id, read.id, ReplayRequest(provider="local")
            )
        assert caught.value.code == "not_replayable"
