"""The paper exchange over HTTP: shapes, exact decimals, and every bad input a 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from core.config import Settings
from main_consolidated import create_app
from services.container import Services
from tests.api.conftest import running_app
from tests.services.paper_trading.test_service import tick

ORDERS = "/api/v1/trading/paper/order"


@pytest.fixture
async def app_and_client(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    settings = make_settings(
        database={"url": database_url},
        redis={"url": ""},
        market_data={"market_data_stream": False},
    )
    app = create_app(settings)
    async with running_app(app) as client:
        services: Services = app.state.services
        await services.paper_trading.on_ticks(tick("99", "100", asks=[("100", "50")]))
        yield services, client


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == code
    return body


async def test_a_json_number_is_read_exactly_and_decimals_come_back_as_strings(
    app_and_client: tuple[Services, httpx.AsyncClient],
) -> None:
    _, client = app_and_client
    content = b'{"symbol": "BTC-USD", "side": "buy", "quantity": 0.1, "client_order_id": "n-1"}'
    response = await client.post(
        ORDERS, content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["symbol"] == "BTC/USD"
    assert body["quantity"] == "0.1"
    assert body["filled_quantity"] == "0.1"
    assert body["fills"][0]["price"] == "100"
    assert body["fees"] == str(Decimal("10") * Decimal("20") / Decimal("10000"))
    assert body["status"] == "filled"


async def test_get_list_and_cancel(app_and_client: tuple[Services, httpx.AsyncClient]) -> None:
    _, client = app_and_client
    placed = await client.post(
        ORDERS,
        json={
            "symbol": "BTC/USD",
            "side": "buy",
            "quantity": "1",
            "order_type": "limit",
            "price": "50",
        },
    )
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    assert placed.json()["status"] == "pending"

    fetched = await client.get(f"/api/v1/trading/paper/orders/{order_id}")
    assert fetched.json()["id"] == order_id
    open_orders = (await client.get("/api/v1/trading/paper/orders?status=open")).json()
    assert [o["id"] for o in open_orders["items"]] == [order_id]
    assert open_orders["next_cursor"] is None

    cancelled = await client.delete(f"/api/v1/trading/paper/orders/{order_id}")
    assert cancelled.json()["status"] == "cancelled"
    again = await client.delete(f"/api/v1/trading/paper/orders/{order_id}")
    assert_error(again, 409, "conflict")
    history = (await client.get("/api/v1/trading/paper/history?symbol=BTC-USD")).json()
    assert history["items"][0]["status"] == "cancelled"


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"symbol": "BTC/USD", "side": "buy", "quantity": "-1"}, 422, "validation_failed"),
        ({"symbol": "BTC/USD", "side": "buy", "quantity": "abc"}, 422, "validation_failed"),
        ({"symbol": "BTC/USD", "side": "hold", "quantity": "1"}, 422, "validation_failed"),
        (
            {"symbol": "BTC/USD", "side": "buy", "quantity": "1", "order_type": "limit"},
            422,
            "validation_failed",
        ),
        (
            {"symbol": "BTC/USD", "side": "buy", "quantity": "1", "price": "10"},
            422,
            "validation_failed",
        ),
        ({"symbol": "BTC/USD", "side": "buy", "quantity": "1e30"}, 422, "validation_failed"),
        (
            {"symbol": "BTC/USD", "side": "buy", "quantity": "1", "extra": 1},
            422,
            "validation_failed",
        ),
        ({"symbol": "DOGE/XYZ", "side": "buy", "quantity": "1"}, 404, "not_found"),
        (
            {
                "symbol": "BTC/USD",
                "side": "buy",
                "quantity": "1000",
                "order_type": "limit",
                "price": "99.9",
            },
            422,
            "insufficient_funds",
        ),
        ({"symbol": "BTC/USD", "side": "buy", "quantity": "100000"}, 422, "quantity_above_maximum"),
        ({"symbol": "BTC/USD", "side": "sell", "quantity": "1"}, 422, "insufficient_funds"),
    ],
)
async def test_bad_orders_are_4xx_with_the_reason(
    app_and_client: tuple[Services, httpx.AsyncClient],
    payload: dict[str, Any],
    status: int,
    code: str,
) -> None:
    _, client = app_and_client
    body = assert_error(await client.post(ORDERS, json=payload), status, code)
    assert body["error"]["message"]


async def test_unknown_order_is_404(app_and_client: tuple[Services, httpx.AsyncClient]) -> None:
    _, client = app_and_client
    missing = "00000000-0000-0000-0000-000000000000"
    assert_error(await client.get(f"/api/v1/trading/paper/orders/{missing}"), 404, "not_found")
    assert_error(
        await client.get("/api/v1/trading/paper/orders/not-a-uuid"), 422, "validation_failed"
    )


async def test_paper_portfolio_and_metrics_follow_the_fills(
    app_and_client: tuple[Services, httpx.AsyncClient],
) -> None:
    _, client = app_and_client
    await client.post(ORDERS, json={"symbol": "BTC-USD", "side": "buy", "quantity": "2"})
    portfolio = (await client.get("/api/v1/trading/paper/portfolio")).json()
    btc = [p for p in portfolio["positions"] if p["symbol"] == "BTC/USD"]
    assert btc[0]["quantity"] == "2"
    assert btc[0]["cost_basis"] == "200"
    metrics = await client.get("/api/v1/trading/paper/metrics")
    assert metrics.status_code == 200, metrics.text
    assert Decimal(metrics.json()["fees"]) == Decimal("0.4")
    missing = "00000000-0000-0000-0000-000000000000"
    assert_error(
        await client.get(f"/api/v1/trading/paper/metrics?account_id={missing}"), 404, "not_found"
    )
