"""The agents API: what a dashboard and curl see, and every bad input as a clear 4xx."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

AGENTS = "/api/v1/agents"


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "Alpha", "symbols": ["BTC-USD"], "llm_provider": "local", **fields}
    response = await client.post(AGENTS, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


class TestCreate:
    async def test_creates_an_inactive_agent_with_its_own_funded_account(
        self, client: httpx.AsyncClient
    ) -> None:
        created = await create(client, paper_balance="2500", max_position_size=15)

        assert created["status"] == "inactive"
        assert created["symbols"] == ["BTC/USD"]
        assert created["max_position_pct"] == "15"
        assert created["llm_model"] == "rule-based"
        portfolio = await client.get(
            "/api/v1/portfolio/summary", params={"account_id": created["account_id"]}
        )
        assert portfolio.json()["cash"] == "2500"

    @pytest.mark.parametrize(
        ("fields", "status", "needle"),
        [
            ({"symbols": ["NOPE/USD"]}, 404, "NOPE/USD"),
            ({"symbols": []}, 422, "symbols"),
            ({"symbols": ["BTC/USD", "btc/usd"]}, 422, "twice"),
            ({"paper_balance": "-5"}, 422, "paper_balance"),
            ({"risk_tolerance": "1.5"}, 422, "risk_tolerance"),
            ({"max_position_pct": "150"}, 422, "max_position_pct"),
            ({"max_position_pct": "5", "max_position_size": "5"}, 422, "not both"),
            ({"decision_interval_seconds": 1}, 422, "decision_interval_seconds"),
            ({"llm_provider": "skynet"}, 422, "unknown LLM provider"),
            ({"personality": {"aggression": "extreme"}}, 422, "aggression"),
            ({"surprise": True}, 422, "surprise"),
        ],
    )
    async def test_refuses_bad_input_with_the_reason(
        self, client: httpx.AsyncClient, fields: dict[str, Any], status: int, needle: str
    ) -> None:
        body = {"name": "Bad", "symbols": ["BTC/USD"], "llm_provider": "local", **fields}
        response = await client.post(AGENTS, json=body)

        assert response.status_code == status, response.text
        assert needle in response.text

    async def test_a_name_is_unique_among_live_agents(self, client: httpx.AsyncClient) -> None:
        first = await create(client, name="Twin")
        again = await client.post(AGENTS, json={"name": "Twin", "symbols": ["BTC/USD"]})
        assert again.status_code == 422
        assert again.json()["error"]["code"] == "name_taken"

        assert (await client.delete(f"{AGENTS}/{first['id']}")).status_code == 204
        await create(client, name="Twin")


class TestLifecycle:
    async def test_start_stop_and_status(self, client: httpx.AsyncClient) -> None:
        created = await create(client)

        started = await client.post(f"{AGENTS}/{created['id']}/start")
        assert started.json()["status"] == "active"
        statuses = {s["id"]: s for s in (await client.get(f"{AGENTS}/status")).json()}
        assert statuses[created["id"]]["status"] == "active"
        assert statuses[created["id"]]["next_run_at"] is not None
        assert statuses[created["id"]]["stats"]["equity"] == "10000"

        stopped = await client.post(f"{AGENTS}/{created['id']}/stop")
        assert stopped.json()["status"] == "inactive"
        assert stopped.json()["status_reason"] == "stopped by the user"

    async def test_a_missing_key_refuses_start_with_the_reason(
        self, client: httpx.AsyncClient
    ) -> None:
        created = await create(client, llm_provider="openai", llm_model="gpt-4o-mini")

        response = await client.post(f"{AGENTS}/{created['id']}/start")

        assert response.status_code == 422
        assert response.json()["error"]["code"] == "agent_cannot_start"
        assert "OPENAI_API_KEY" in response.json()["error"]["message"]

    async def test_update_changes_only_what_is_sent(self, client: httpx.AsyncClient) -> None:
        created = await create(client, risk_tolerance="0.2")

        response = await client.put(
            f"{AGENTS}/{created['id']}", json={"decision_interval_seconds": 60}
        )

        assert response.status_code == 200
        assert response.json()["decision_interval_seconds"] == 60
        assert response.json()["risk_tolerance"] == "0.2"

    async def test_unknown_agents_are_404(self, client: httpx.AsyncClient) -> None:
        missing = "00000000-0000-0000-0000-000000000001"
        for method, path in [
            ("GET", missing),
            ("PUT", missing),
            ("DELETE", missing),
            ("POST", f"{missing}/start"),
            ("POST", f"{missing}/execute-decision"),
            ("GET", f"{missing}/decisions"),
        ]:
            response = await client.request(method, f"{AGENTS}/{path}", json={})
            assert response.status_code == 404, (method, path, response.text)


class TestDecisions:
    async def test_execute_then_filter_the_log(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        base = f"{AGENTS}/{created['id']}"
        cycle = await client.post(f"{base}/execute-decision")
        assert cycle.status_code == 200
        override = await client.post(
            f"{base}/execute-decision",
            json={
                "decision": {
                    "decision_type": "trade",
                    "symbol": "BTC/USD",
                    "side": "buy",
                    "quantity": 0.001,
                    "reasoning": "manual",
                    "confidence_score": 0.9,
                }
            },
        )
        assert override.status_code == 200
        assert override.json()["trigger"] == "override"
        assert override.json()["quantity"] == "0.001"

        buys = await client.get(f"{base}/decisions", params={"action_taken": "buy"})
        assert [d["id"] for d in buys.json()["items"]] == [override.json()["id"]]
        everything = await client.get(f"{base}/decisions", params={"limit": 1})
        assert everything.json()["total"] == 2
        assert everything.json()["items"][0]["id"] == override.json()["id"]
        detail = await client.get(f"{base}/decisions/{cycle.json()['id']}")
        assert detail.json()["llm_call"]["provider"] == "local"
        replay = await client.post(f"{base}/decisions/{override.json()['id']}/replay")
        assert replay.json()["same_action"] is True

    async def test_an_invalid_override_is_422(self, client: httpx.AsyncClient) -> None:
        created = await create(client)

        response = await client.post(
            f"{AGENTS}/{created['id']}/execute-decision",
            json={"decision": {"decision_type": "trade", "reasoning": "x", "confidence_score": 1}},
        )

        assert response.status_code == 422
        assert "symbol" in response.text

    async def test_coordination_needs_the_symbol_on_every_agent(
        self, client: httpx.AsyncClient
    ) -> None:
        first = await create(client, name="One")
        second = await create(client, name="Two", symbols=["ETH/USD"])

        response = await client.post(
            f"{AGENTS}/coordinate-decision",
            json={"agent_ids": [first["id"], second["id"]], "symbol": "BTC/USD"},
        )

        assert response.status_code == 422
        assert "does not trade BTC/USD" in response.json()["error"]["message"]
