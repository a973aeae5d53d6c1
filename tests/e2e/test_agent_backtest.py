"""Agent backtests on the real server, through HTTP only: a local-provider agent over
the server's own history (metrics beside buy-and-hold), and an openai agent through its
real SDK against the stand-in, whose re-run asks the stand-in nothing and costs
nothing; the estimate alone asks nothing, and a run over the cost ceiling is refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.e2e import model_standin
from tests.e2e.risk_helpers import error, ok

AGENTS = "/api/v1/agents"
DECISION = {
    "reasoning": "Stand-in model: a small buy.",
    "decision_type": "trade",
    "symbol": "BTC/USD",
    "side": "buy",
    "fraction_of_equity": "0.02",
    "order_type": "market",
    "confidence_score": "0.8",
}
OPENAI_KEY = "sk-e2e-openai-standin"


@pytest.fixture(scope="module")
def standin() -> Iterator[model_standin.StandIn]:
    with model_standin.serving(DECISION) as running:
        yield running


@pytest.fixture(scope="module")
def module_env(standin: model_standin.StandIn) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": f"{standin.url}/v1",
        "AGENT_SCHEDULER_ENABLED": "false",
    }


async def create_agent(http: httpx.AsyncClient, **fields: Any) -> str:
    body = {
        "name": f"e2e-bt-{uuid.uuid4().hex[:8]}",
        "symbols": ["BTC/USD"],
        "paper_balance": "10000",
        **fields,
    }
    agent: dict[str, Any] = ok(await http.post(AGENTS, json=body), 201)
    return str(agent["id"])


def period(hours: float) -> dict[str, str]:
    # Aligned to the candles, so every decision has a candle opening at its time.
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    end -= timedelta(minutes=end.minute % 5)
    return {"start": (end - timedelta(hours=hours)).isoformat(), "end": end.isoformat()}


async def test_a_local_agent_backtests_free_beside_buy_and_hold(http: httpx.AsyncClient) -> None:
    agent = await create_agent(http, llm_provider="local", risk_tolerance="0.9")

    run = ok(await http.post(f"{AGENTS}/{agent}/backtest", json={**period(10), "every": "5m"}))

    assert run["status"] == "completed"
    assert run["estimate"]["free"] is True
    assert Decimal(run["estimate"]["estimated_cost"]) == 0
    result = run["result"]
    assert result["decisions"] == 120
    assert sum(result["actions"].values()) == 120
    assert result["model_calls"]["local"] == 120
    assert Decimal(result["model_calls"]["cost"]) == 0
    assert set(result["metrics"]) == {
        "total_return",
        "cagr",
        "sharpe",
        "sortino",
        "max_drawdown",
        "win_rate",
        "profit_factor",
        "exposure",
        "trades",
    }
    (hold,) = result["buy_and_hold"]
    assert hold["symbol"] == "BTC/USD"
    assert set(hold["metrics"]) == set(result["metrics"])
    assert len(result["equity_curve"]) == 121
    cash = Decimal(10000)
    for fill in result["fills"]:
        notional = Decimal(fill["quantity"]) * Decimal(fill["price"])
        fee = Decimal(fill["fee"])
        cash += -(notional + fee) if fill["side"] == "buy" else notional - fee
    assert Decimal(result["final_cash"]) == cash


async def test_a_model_agent_rerun_asks_nothing_and_costs_nothing(
    http: httpx.AsyncClient, standin: model_standin.StandIn
) -> None:
    agent = await create_agent(http, llm_provider="openai", llm_model="gpt-4o-mini")
    body = {**period(1), "every": "5m"}
    before = len(standin.openai_requests)

    estimate = ok(
        await http.post(f"{AGENTS}/{agent}/backtest", json={**body, "estimate_only": True})
    )
    assert estimate["status"] == "estimated"
    assert estimate["result"] is None
    assert Decimal(estimate["estimate"]["estimated_cost"]) > 0
    assert len(standin.openai_requests) == before

    first = ok(await http.post(f"{AGENTS}/{agent}/backtest", json=body))
    asked = len(standin.openai_requests) - before
    second = ok(await http.post(f"{AGENTS}/{agent}/backtest", json=body))

    assert asked == 12
    assert len(standin.openai_requests) - before == asked
    assert first["result"]["model_calls"]["asked"] == 12
    assert first["result"]["model_calls"]["prompt_tokens"] == 12 * model_standin.PROMPT_TOKENS
    assert Decimal(first["result"]["model_calls"]["cost"]) > 0
    assert second["result"]["model_calls"]["asked"] == 0
    assert second["result"]["model_calls"]["cached"] == 12
    assert Decimal(second["result"]["model_calls"]["cost"]) == 0
    first["result"].pop("model_calls")
    second["result"].pop("model_calls")
    assert first["result"] == second["result"]


async def test_a_run_over_the_cost_ceiling_is_refused_naming_both(
    http: httpx.AsyncClient, standin: model_standin.StandIn
) -> None:
    agent = await create_agent(http, llm_provider="openai", llm_model="gpt-4o")
    before = len(standin.openai_requests)

    refused = error(
        await http.post(f"{AGENTS}/{agent}/backtest", json={**period(24 * 15), "every": "5m"}),
        422,
        "backtest_cost_exceeded",
    )

    assert refused["details"]["max_cost"] == "5"
    assert Decimal(refused["details"]["estimated_cost"]) > 5
    assert refused["details"]["decisions"] == 4320
    assert len(standin.openai_requests) == before


async def test_too_many_decisions_are_refused_naming_the_count(http: httpx.AsyncClient) -> None:
    agent = await create_agent(http, llm_provider="local")

    refused = error(
        await http.post(f"{AGENTS}/{agent}/backtest", json={**period(24 * 30), "every": "5m"}),
        422,
        "too_many_decisions",
    )

    assert refused["details"] == {"decisions": 8640, "max_decisions": 5000}
