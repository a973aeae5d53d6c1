"""Agents on the real server: lifecycle events, a forced cycle's decision and its AG-UI
run over /ws, and agents on the openai and anthropic providers, each through its real
SDK (inside the server process) against a local stand-in of the provider's API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from ag_ui.core import Event as AGUIEvent
from ag_ui.core import EventType as AGUIType
from pydantic import TypeAdapter

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
        [("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5")],
    )
    async def test_model_is_asked_through_its_sdk(
        self,
        http: httpx.AsyncClient,
        standin: model_standin.StandIn,
        provider: str,
        model: str,
    ) -> None:
        agent = await create_agent(http, llm_provider=provider, llm_model=model)
        requests = standin.openai_requests if provider == "openai" else standin.anthropic_requests
        before = len(requests)
        decision = await force_cycle(http, agent["id"])

        asked = requests[before:]
        assert len(asked) == 1, f"{provider} asked {len(asked)} times"
        request = asked[0]
        assert request["body"]["model"] == model
        assert agent["name"] in str(request["body"]), "the prompt is this agent's"
        if provider == "openai":
            assert request["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
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

        detail = await http.get(f"/api/v1/agents/{agent['id']}/decisions/{decision['id']}")
        assert detail.status_code == 200
        call = detail.json()["llm_call"]
        assert call["provider"] == provider
        assert call["model"] == model
        assert call["raw_response"] is not None
