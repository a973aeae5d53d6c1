"""Agents on the real server: lifecycle events, a forced cycle's decision and its AG-UI
run over /ws, and agents on the openai and anthropic providers, each through its real
SDK (inside the server process) against a local stand-in of the provider's API."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from ag_ui.core import Event as AGUIEvent
from ag_ui.core import EventType as AGUIType
from pydantic import TypeAdapter

from services.llm.pricing import DEFAULT_PRICES
from tests.e2e import model_standin
from tests.e2e.conftest import event_of, subscriber
from tests.e2e.server import LiveServer

AGUI_EVENT: TypeAdapter[Any] = TypeAdapter(AGUIEvent)
REASONING = "Stand-in model: the trend is flat, so I hold."
DECISION = {
    "decision_type": "hold",
    "symbol": "BTC/USD",
    "reasoning": REASONING,
    "confidence_score": "0.55",
}
OPENAI_KEY = "sk-e2e-openai-standin"
ANTHROPIC_KEY = "sk-ant-e2e-standin"
OPENROUTER_KEY = "sk-or-e2e-standin"
COMPATIBLE_KEY = "e2e-local-server-key"
BEARER = {"openai": OPENAI_KEY, "openrouter": OPENROUTER_KEY, "openai_compatible": COMPATIBLE_KEY}


@pytest.fixture(scope="module")
def standin() -> Iterator[model_standin.StandIn]:
    with model_standin.serving(DECISION) as running:
        yield running


@pytest.fixture(scope="module")
def module_env(standin: model_standin.StandIn) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": f"{standin.url}/v1",
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "ANTHROPIC_BASE_URL": standin.url,
        "OPENROUTER_API_KEY": OPENROUTER_KEY,
        "OPENROUTER_BASE_URL": f"{standin.url}/v1",
        "OPENAI_COMPATIBLE_BASE_URL": f"{standin.url}/v1",
        "OPENAI_COMPATIBLE_API_KEY": COMPATIBLE_KEY,
        "LLM_PRICES": json.dumps({"llama3.1": {"input": "0.1", "output": "0.2"}}),
        # Cycles run when a test asks; the scheduler is tested on its own.
        "AGENT_SCHEDULER_ENABLED": "false",
    }


async def create_agent(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": f"e2e-{uuid.uuid4().hex[:8]}", "symbols": ["BTC/USD"], **fields}
    response = await http.post("/api/v1/agents", json=body)
    assert response.status_code == 201, response.text
    agent: dict[str, Any] = response.json()
    return agent


async def force_cycle(http: httpx.AsyncClient, agent_id: str) -> dict[str, Any]:
    response = await http.post(f"/api/v1/agents/{agent_id}/execute-decision")
    assert response.status_code == 200, response.text
    decision: dict[str, Any] = response.json()
    return decision


class TestLifecycle:
    async def test_start_and_stop_are_pushed_on_agents(
        self, server: LiveServer, http: httpx.AsyncClient
    ) -> None:
        agent = await create_agent(http, llm_provider="local")
        mine = lambda f: f.get("type") == "agent_status" and f["data"]["agent_id"] == agent["id"]  # noqa: E731
        async with subscriber(server, "agents") as sub:
            assert (await http.post(f"/api/v1/agents/{agent['id']}/start")).status_code == 200
            started = await sub.until(mine)
            assert started["data"]["status"] == "active"
            assert (await http.post(f"/api/v1/agents/{agent['id']}/stop")).status_code == 200
            stopped = await sub.until(mine)
            assert stopped["data"]["status"] == "inactive"
            assert stopped["seq"] > started["seq"]


class TestForcedCycle:
    async def test_decision_and_its_agui_run_arrive(
        self, server: LiveServer, http: httpx.AsyncClient
    ) -> None:
        agent = await create_agent(http, llm_provider="local")
        run_channel = f"agent:{agent['id']}"
        async with subscriber(server, "agents", run_channel) as sub:
            decision = await force_cycle(http, agent["id"])
            pushed = await sub.until(
                lambda f: (
                    f.get("type") == "agent_decision" and f["data"].get("id") == decision["id"]
                )
            )
            assert pushed["channel"] == "agents"
            assert pushed["data"]["agent_id"] == agent["id"]
            assert pushed["data"]["reasoning"] == decision["reasoning"]

            frames = await sub.collect(
                event_of("agent_run", run_channel),
                lambda f: f["data"]["type"] in ("RUN_FINISHED", "RUN_ERROR"),
            )
        events = [AGUI_EVENT.validate_python(f["data"]) for f in frames]
        assert events[0].type is AGUIType.RUN_STARTED
        assert events[-1].type is AGUIType.RUN_FINISHED, frames[-1]
        assert events[0].thread_id == agent["id"]
        assert {e.run_id for e in events if hasattr(e, "run_id")} == {events[0].run_id}
        seqs = [f["seq"] for f in frames]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no gap in the run"
        steps = [e.step_name for e in events if e.type is AGUIType.STEP_STARTED]
        assert steps, "the run names its steps"
        finished = [e.step_name for e in events if e.type is AGUIType.STEP_FINISHED]
        assert finished == steps
        text = "".join(e.delta for e in events if e.type is AGUIType.TEXT_MESSAGE_CONTENT)
        assert decision["reasoning"] in text


class TestProviders:
    @pytest.mark.parametrize(
        ("provider", "model"),
        [
            ("openai", "gpt-4o-mini"),
            ("anthropic", "claude-haiku-4-5"),
            ("openrouter", "openai/gpt-4o-mini"),
            ("openai_compatible", "llama3.1"),
        ],
    )
    async def test_model_is_asked_through_its_sdk(
        self,
        http: httpx.AsyncClient,
        standin: model_standin.StandIn,
        provider: str,
        model: str,
    ) -> None:
        agent = await create_agent(http, llm_provider=provider, llm_model=model)
        requests = (
            standin.anthropic_requests if provider == "anthropic" else standin.openai_requests
        )
        before = len(requests)
        decision = await force_cycle(http, agent["id"])

        asked = requests[before:]
        assert len(asked) == 1, f"{provider} asked {len(asked)} times"
        request = asked[0]
        assert request["body"]["model"] == model
        assert agent["name"] in str(request["body"]), "the prompt is this agent's"
        if provider != "anthropic":
            # Each provider's own key, never another's.
            assert request["headers"]["authorization"] == f"Bearer {BEARER[provider]}"
        else:
            # This SDK release sends the key as a bearer token; older ones as x-api-key.
            headers = request["headers"]
            sent = headers.get("x-api-key") or headers.get("authorization", "").removeprefix(
                "Bearer "
            )
            assert sent == ANTHROPIC_KEY
            assert "anthropic-version" in request["headers"]

        assert decision["status"] != "error", decision
        assert decision["decision_type"] == "hold"
        assert decision["reasoning"] == REASONING
        assert decision["prompt_tokens"] == model_standin.PROMPT_TOKENS
        assert decision["completion_tokens"] == model_standin.COMPLETION_TOKENS
        assert Decimal(decision["cost"]) > 0
        if provider == "openrouter":
            # What OpenRouter reported it charged, not a price table's guess.
            assert Decimal(decision["cost"]) == Decimal(str(model_standin.OPENROUTER_COST))
            assert request["body"]["provider"] == {"require_parameters": True}
        assert decision["answered_by"] == {"provider": provider, "model": model}

        detail = await http.get(f"/api/v1/agents/{agent['id']}/decisions/{decision['id']}")
        assert detail.status_code == 200
        call = detail.json()["llm_call"]
        assert call["provider"] == provider
        assert call["model"] == model
        assert call["raw_response"] is not None


def _cap(body: dict[str, Any]) -> int:
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    assert isinstance(cap, int), body
    return cap


def _asked(standin: model_standin.StandIn, provider: str) -> list[dict[str, Any]]:
    return standin.openai_requests if provider == "openai" else standin.anthropic_requests


PROVIDERS = [("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5")]


class TestAnswersThatAreNotDecisions:
    """A truncated answer, a refusal: what the model did is what the decision says,
    through each provider's SDK in the server process."""

    @pytest.mark.parametrize(("provider", "model"), PROVIDERS)
    async def test_a_truncated_answer_is_asked_again_with_a_larger_cap(
        self, http: httpx.AsyncClient, standin: model_standin.StandIn, provider: str, model: str
    ) -> None:
        agent = await create_agent(http, llm_provider=provider, llm_model=model)
        before = len(_asked(standin, provider))
        standin.script(provider, "truncated")

        decision = await force_cycle(http, agent["id"])

        asked = _asked(standin, provider)[before:]
        assert len(asked) == 2, "one retry, not a repair loop"
        assert _cap(asked[1]["body"]) > _cap(asked[0]["body"])
        assert decision["status"] != "error", decision
        assert decision["reasoning"] == REASONING

    @pytest.mark.parametrize(("provider", "model"), PROVIDERS)
    async def test_cut_off_twice_is_an_error_that_says_so(
        self, http: httpx.AsyncClient, standin: model_standin.StandIn, provider: str, model: str
    ) -> None:
        agent = await create_agent(http, llm_provider=provider, llm_model=model)
        before = len(_asked(standin, provider))
        standin.script(provider, "truncated", "truncated")

        decision = await force_cycle(http, agent["id"])

        assert len(_asked(standin, provider)[before:]) == 2
        assert decision["status"] == "error"
        assert "cut the answer off at the output token cap" in decision["reasoning"]
        # Both answers were paid for: the cost is theirs, not zero.
        assert decision["prompt_tokens"] == 2 * model_standin.PROMPT_TOKENS
        assert Decimal(decision["cost"]) > 0

    @pytest.mark.parametrize(("provider", "model"), PROVIDERS)
    async def test_a_refusal_is_recorded_not_repaired(
        self, http: httpx.AsyncClient, standin: model_standin.StandIn, provider: str, model: str
    ) -> None:
        agent = await create_agent(http, llm_provider=provider, llm_model=model)
        before = len(_asked(standin, provider))
        standin.script(provider, "refusal")

        decision = await force_cycle(http, agent["id"])

        assert len(_asked(standin, provider)[before:]) == 1, "a refusal is not argued with"
        assert decision["status"] == "error"
        assert "refused to decide" in decision["reasoning"]
        assert model_standin.REFUSAL in decision["reasoning"]
        detail = await http.get(f"/api/v1/agents/{agent['id']}/decisions/{decision['id']}")
        call = detail.json()["llm_call"]
        assert call["error"] is not None
        assert model_standin.REFUSAL in call["error"]
        # A refusal proves the provider is up: the next cycle asks again.
        again = await force_cycle(http, agent["id"])
        assert again["status"] != "error", again


class TestTheBill:
    async def test_an_unpriced_model_is_refused_with_the_way_out(
        self, http: httpx.AsyncClient
    ) -> None:
        body = {
            "name": f"e2e-{uuid.uuid4().hex[:8]}",
            "symbols": ["BTC/USD"],
            "llm_provider": "openai",
            "llm_model": "o9-nobody-priced-this",
        }
        refused = await http.post("/api/v1/agents", json=body)
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["code"] == "model_unpriced"
        assert "LLM_PRICES" in error["message"]
        assert "daily_token_budget" in error["message"]

    async def test_with_a_token_budget_an_unpriced_model_runs_and_counts_tokens(
        self, http: httpx.AsyncClient, standin: model_standin.StandIn
    ) -> None:
        agent = await create_agent(
            http,
            llm_provider="openai",
            llm_model="o9-nobody-priced-this",
            daily_token_budget=10_000,
        )
        decision = await force_cycle(http, agent["id"])
        assert decision["status"] != "error", decision
        assert decision["cost"] is None, "unknown, never zero"
        statuses = (await http.get("/api/v1/agents/status")).json()
        mine = next(s for s in statuses if s["id"] == agent["id"])
        assert mine["tokens_today"] == model_standin.PROMPT_TOKENS + model_standin.COMPLETION_TOKENS
        assert mine["unknown_cost_calls_today"] == 1

    @pytest.mark.parametrize(("provider", "model"), PROVIDERS)
    async def test_cached_prompt_tokens_are_billed_at_the_cached_rate(
        self, http: httpx.AsyncClient, provider: str, model: str
    ) -> None:
        agent = await create_agent(http, llm_provider=provider, llm_model=model)
        decision = await force_cycle(http, agent["id"])
        price = DEFAULT_PRICES[model]
        assert price.cached_input_per_million is not None
        assert price.cached_input_per_million < price.input_per_million
        fresh = model_standin.PROMPT_TOKENS - model_standin.CACHED_TOKENS
        expected = (
            fresh * price.input_per_million
            + model_standin.CACHED_TOKENS * price.cached_input_per_million
            + model_standin.COMPLETION_TOKENS * price.output_per_million
        ) / 1_000_000
        assert Decimal(decision["cost"]) == expected
