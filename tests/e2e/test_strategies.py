"""Strategies on the real server, through HTTP only: create one, a bad parameter named in
the 422, and a backtest over the server's own candles whose trades and metrics are what
GET then shows stored on the strategy."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from tests.e2e.risk_helpers import error, ok

STRATEGIES = "/api/v1/strategies"
D = Decimal


def named(**fields: Any) -> dict[str, Any]:
    return {"name": f"e2e-strategy-{uuid.uuid4().hex[:8]}", **fields}


async def test_create_read_update_delete(http: httpx.AsyncClient) -> None:
    body = named(strategy_type="mean_reversion", parameters={"window": 30, "entry_z": 1.5})
    created = ok(await http.post(STRATEGIES, json=body), 201)
    assert created["parameters"] == {"window": 30, "entry_z": 1.5, "exit_z": 0.0}
    url = f"{STRATEGIES}/{created['id']}"
    assert ok(await http.get(url)) == created
    listed = ok(await http.get(STRATEGIES))
    assert created["id"] in [s["id"] for s in listed["items"]]
    error(await http.post(STRATEGIES, json={**body}), 409, "name_taken")
    changed = ok(await http.patch(url, json={"parameters": {"exit_z": 0.5}}))
    assert changed["parameters"] == {"window": 20, "entry_z": 2.0, "exit_z": 0.5}
    ok(await http.delete(url), 204)
    error(await http.get(url), 404, "not_found")


async def test_a_bad_parameter_is_named_in_the_422(http: httpx.AsyncClient) -> None:
    bad = named(strategy_type="trend_following", parameters={"fast_window": 30, "slow_window": 10})
    refused = error(await http.post(STRATEGIES, json=bad), 422, "validation_failed")
    assert [e["field"] for e in refused["details"]["errors"]] == ["parameters.slow_window"]
    assert "fast_window" in refused["message"]
    arbitrage = error(
        await http.post(STRATEGIES, json=named(strategy_type="arbitrage")), 422, "validation_failed"
    )
    assert [e["field"] for e in arbitrage["details"]["errors"]] == ["parameters.reference_symbol"]
    untraded = error(
        await http.post(
            STRATEGIES,
            json=named(strategy_type="arbitrage", parameters={"reference_symbol": "NOPE/USD"}),
        ),
        422,
        "validation_failed",
    )
    assert "NOPE/USD" in untraded["message"]
    created = ok(await http.post(STRATEGIES, json=named(strategy_type="breakout")), 201)
    url = f"{STRATEGIES}/{created['id']}"
    refused = error(
        await http.patch(url, json={"parameters": {"exit_window": 0}}), 422, "validation_failed"
    )
    assert [e["field"] for e in refused["details"]["errors"]] == ["parameters.exit_window"]
    assert ok(await http.get(url))["parameters"] == created["parameters"]


async def test_a_backtest_is_stored_on_its_strategy(http: httpx.AsyncClient) -> None:
    created = ok(
        await http.post(
            STRATEGIES,
            json=named(
                strategy_type="trend_following", parameters={"fast_window": 5, "slow_window": 20}
            ),
        ),
        201,
    )
    url = f"{STRATEGIES}/{created['id']}"
    start = datetime.now(UTC) - timedelta(hours=20)
    request = {
        "symbol": "BTC/USD",
        "timeframe": "1m",
        "start": start.isoformat(),
        "initial_cash": 10000.5,  # an exact decimal, as money is read
        "slippage_bps": "1",
    }
    run = ok(await http.post(f"{url}/backtest", json=request))
    assert run["strategy_id"] == created["id"]
    assert run["candles"] >= 1000
    assert run["trades"], "a 5/20 crossover over a day of minutes trades"
    assert run["metrics"]["trades"] == len(run["trades"])
    assert run["config"]["initial_cash"] == "10000.5"
    assert 2 <= len(run["equity_curve"]) <= 500
    for trade in run["trades"]:
        assert datetime.fromisoformat(trade["entry_time"]) < datetime.fromisoformat(
            trade["exit_time"]
        )
    stored = ok(await http.get(url))
    assert stored["performance_metrics"] == run["metrics"]
    assert stored["backtest_results"]["metrics"] == run["metrics"]
    assert stored["backtest_results"]["final_equity"] == run["final_equity"]
    assert stored["backtest_results"]["candles"] == run["candles"]
    # The reference engine gives the same trades on the same candles.
    again = {**request, "end": run["last_open"], "engine": "reference"}
    reference = ok(await http.post(f"{url}/backtest", json={**again, "start": run["first_open"]}))
    fast = ok(
        await http.post(
            f"{url}/backtest", json={**again, "start": run["first_open"], "engine": "vectorized"}
        )
    )
    assert reference["trades"] == fast["trades"]
    assert reference["metrics"] == fast["metrics"]
    assert ok(await http.get(url))["performance_metrics"] == fast["metrics"]


async def test_a_period_past_the_bound_is_a_422_with_the_count(http: httpx.AsyncClient) -> None:
    created = ok(await http.post(STRATEGIES, json=named(strategy_type="momentum")), 201)
    start = datetime.now(UTC) - timedelta(days=365)
    refused = error(
        await http.post(
            f"{STRATEGIES}/{created['id']}/backtest",
            json={"symbol": "BTC/USD", "timeframe": "1m", "start": start.isoformat()},
        ),
        422,
        "validation_failed",
    )
    assert refused["details"]["candles"] > refused["details"]["max_candles"] == 200_000


async def test_an_arbitrage_strategy_backtests_against_its_reference(
    http: httpx.AsyncClient,
) -> None:
    created = ok(
        await http.post(
            STRATEGIES,
            json=named(
                strategy_type="arbitrage",
                parameters={"reference_symbol": "eth-usd", "window": 30, "entry_z": 1.0},
            ),
        ),
        201,
    )
    assert created["parameters"]["reference_symbol"] == "ETH/USD"
    url = f"{STRATEGIES}/{created['id']}"
    start = (datetime.now(UTC) - timedelta(hours=20)).isoformat()
    body = {"symbol": "BTC/USD", "timeframe": "1m", "start": start}

    run = ok(await http.post(f"{url}/backtest", json=body))

    assert run["strategy_type"] == "arbitrage"
    assert run["trades"], "a 1-sigma spread reverts often over 20 hours"
    check = ok(await http.post(f"{url}/lookahead-check", json=body))
    assert check["repainting"] is False
    itself = error(
        await http.post(f"{url}/backtest", json={**body, "symbol": "ETH/USD"}),
        422,
        "validation_failed",
    )
    assert "two symbols" in itself["message"]
