"""The look-ahead check on the real server, through HTTP only: a strategy created there is
checked over the server's own candles and found clean; an unknown strategy is a 404 and
a bad period a 422."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.e2e.risk_helpers import error, ok

STRATEGIES = "/api/v1/strategies"


async def created(http: httpx.AsyncClient, **fields: Any) -> str:
    body = {"name": f"e2e-lookahead-{uuid.uuid4().hex[:8]}", **fields}
    strategy: dict[str, Any] = ok(await http.post(STRATEGIES, json=body), 201)
    return str(strategy["id"])


def period(hours: float = 20, **fields: Any) -> dict[str, Any]:
    start = datetime.now(UTC) - timedelta(hours=hours)
    return {"symbol": "BTC/USD", "timeframe": "1m", "start": start.isoformat(), **fields}


async def test_a_built_in_strategy_gets_a_clean_report(http: httpx.AsyncClient) -> None:
    strategy = await created(
        http, strategy_type="trend_following", parameters={"fast_window": 5, "slow_window": 20}
    )
    report = ok(await http.post(f"{STRATEGIES}/{strategy}/lookahead-check", json=period()))
    assert report["strategy_id"] == strategy
    assert report["symbol"] == "BTC/USD"
    assert report["candles"] >= 1000
    assert report["position_changes"] > 0, "a 5/20 crossover over a day of minutes trades"
    assert report["cut_points"] == report["position_changes"]
    assert report["repainting"] is False
    assert report["findings"] == []
    assert report["findings_total"] == 0
    assert report["summary"].startswith("No look-ahead found")
    bounded = ok(
        await http.post(f"{STRATEGIES}/{strategy}/lookahead-check", json=period(max_cut_points=2))
    )
    assert bounded["cut_points"] == 2
    assert bounded["repainting"] is False


async def test_an_unknown_strategy_is_a_404(http: httpx.AsyncClient) -> None:
    error(
        await http.post(f"{STRATEGIES}/{uuid.uuid4()}/lookahead-check", json=period()),
        404,
        "not_found",
    )


async def test_a_bad_period_is_a_422(http: httpx.AsyncClient) -> None:
    strategy = await created(http, strategy_type="momentum")
    url = f"{STRATEGIES}/{strategy}/lookahead-check"
    too_long = error(await http.post(url, json=period(hours=24 * 365)), 422, "validation_failed")
    assert too_long["details"]["candles"] > too_long["details"]["max_candles"] == 200_000
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    empty = error(await http.post(url, json=period(start=future)), 422, "validation_failed")
    assert "no closed 1m candles" in empty["message"]
    naive = error(
        await http.post(url, json=period(start="2025-01-01T00:00:00")), 422, "validation_failed"
    )
    assert [e["field"] for e in naive["details"]["errors"]] == ["body.start"]
    error(await http.post(url, json=period(max_cut_points=0)), 422, "validation_failed")
