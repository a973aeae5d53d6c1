"""Dates and times in the API are ISO 8601 strings, as the OpenAPI says (`format:
date-time`). Pydantic's lax mode also takes a number as Unix seconds, so `start=0.5`
silently meant 1970 and `expires_at: 1700000000` an expiry in 2023: both are refused
with the field named."""

from __future__ import annotations

import httpx
import pytest

NUMBERS = ["0.5", "1700000000", "-1", "1e9"]


def _fields(response: httpx.Response) -> list[str]:
    errors = response.json()["error"]["details"]["errors"]
    return [e["field"] for e in errors]


@pytest.mark.parametrize("value", NUMBERS)
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/trading/paper/history",
        "/api/v1/trading/paper/orders",
        "/api/v1/trading/paper/fills",
        "/api/v1/portfolio/performance",
        "/api/v1/market/historical/BTC-USD",
    ],
)
async def test_a_number_is_not_a_moment_in_a_query(
    client: httpx.AsyncClient, path: str, value: str
) -> None:
    response = await client.get(path, params={"start": value})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_failed"
    assert _fields(response) == ["query.start"]
    assert "ISO 8601" in response.text


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/trading/paper/history",
        "/api/v1/trading/paper/orders",
        "/api/v1/trading/paper/fills",
        "/api/v1/portfolio/performance",
        "/api/v1/market/historical/BTC-USD",
    ],
)
async def test_an_iso_moment_is_taken(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, params={"start": "2026-01-01T00:00:00Z"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("value", [1700000000, 0.5, "1700000000"])
async def test_a_number_is_not_an_expiry(client: httpx.AsyncClient, value: object) -> None:
    response = await client.post(
        "/api/v1/trading/paper/order",
        json={
            "symbol": "BTC/USD",
            "side": "buy",
            "order_type": "limit",
            "quantity": "0.001",
            "price": "1000",
            "time_in_force": "GTD",
            "expires_at": value,
        },
    )
    assert response.status_code == 422, response.text
    assert _fields(response) == ["body.expires_at"]


async def test_a_number_is_not_a_moment_in_the_decision_log(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/api/v1/agents", json={"name": "Dated", "symbols": ["BTC/USD"], "llm_provider": "local"}
    )
    assert created.status_code == 201, created.text
    path = f"/api/v1/agents/{created.json()['id']}/decisions"
    refused = await client.get(path, params={"start": "1700000000"})
    assert refused.status_code == 422, refused.text
    assert _fields(refused) == ["query.start"]
    # Without a zone a moment is UTC, as before.
    assert (await client.get(path, params={"start": "2026-01-01T00:00:00"})).status_code == 200
