"""The portfolio routes through the real app: the simulated market (stepped by hand, no
loop) and the real paper exchange, on each database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from core.config import Settings
from main_consolidated import create_app
from services.container import Services
from tests.api.conftest import running_app

BASE = "/api/v1/portfolio"
D = Decimal


@dataclass
class App:
    client: httpx.AsyncClient
    services: Services


@pytest.fixture
async def app(make_settings: Callable[..., Settings], database_url: str) -> AsyncIterator[App]:
    settings = make_settings(
        database={"url": database_url},
        redis={"url": ""},
        market_data={"market_data_stream": False},
        paper={"initial_balance": "10000"},
    )
    application = create_app(settings)
    async with running_app(application) as client:
        yield App(client, application.state.services)


def _assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == code
    return body


async def rebalance(app: App, body: str) -> httpx.Response:
    return await app.client.post(
        f"{BASE}/rebalance", content=body, headers={"content-type": "application/json"}
    )


class TestSummary:
    async def test_fresh_default_account_is_all_cash(self, app: App) -> None:
        response = await app.client.get(f"{BASE}/summary")
        assert response.status_code == 200, response.text
        body = response.json()
        money = ("equity", "cash", "positions_value", "total_pnl", "daily_pnl")
        assert all(isinstance(body[name], str) for name in money)
        assert [D(body[name]) for name in money] == [D(10000), D(10000), D(0), D(0), D(0)]
        assert body["positions_count"] == 0
        assert body["daily_reference_at"] is None

    async def test_unknown_account_is_not_found(self, app: App) -> None:
        response = await app.client.get(f"{BASE}/summary", params={"account_id": str(uuid.uuid4())})
        _assert_error(response, 404, "not_found")

    async def test_malformed_account_id_is_refused(self, app: App) -> None:
        response = await app.client.get(f"{BASE}/positions", params={"account_id": "nope"})
        assert response.status_code == 422


class TestRebalance:
    async def test_dry_run_plans_with_an_exact_json_number_and_places_nothing(
        self, app: App
    ) -> None:
        response = await rebalance(
            app,
            '{"targets": [{"symbol": "BTC-USD", "weight": 0.250000000000000000001}], '
            '"dry_run": true}',
        )
        assert response.status_code == 200, response.text
        plan = response.json()
        assert (plan["dry_run"], D(plan["equity"])) == (True, D(10000))
        # The weight is read exactly: a float would have made it 0.25.
        assert D(plan["cash_weight"]) == D("0.749999999999999999999")
        (allocation,) = plan["allocations"]
        assert allocation["symbol"] == "BTC/USD"
        assert D(allocation["target_value"]) == D("2500.00000000000000001")
        (order,) = plan["orders"]
        assert (order["side"], order["status"], order["order"]) == ("buy", "planned", None)
        assert D(order["expected_notional"]) <= D(2500)
        positions = await app.client.get(f"{BASE}/positions")
        assert positions.json() == []

    async def test_executes_and_the_position_appears(self, app: App) -> None:
        response = await rebalance(app, '{"targets": [{"symbol": "BTC/USD", "weight": "0.1"}]}')
        assert response.status_code == 200, response.text
        (order,) = response.json()["orders"]
        assert order["status"] == "placed"
        filled = D(order["order"]["filled_quantity"])
        assert filled > 0
        positions = (await app.client.get(f"{BASE}/positions")).json()
        assert [(p["symbol"], D(p["quantity"])) for p in positions] == [("BTC/USD", filled)]
        summary = (await app.client.get(f"{BASE}/summary")).json()
        assert summary["positions_count"] == 1
        assert D(summary["equity"]) == D(summary["cash"]) + D(summary["positions_value"])
        # The paper ledger and the valuation agree: all PnL is the change in equity.
        assert D(summary["total_pnl"]) == D(summary["equity"]) - 10000
        assert D(summary["fees"]) > 0

    @pytest.mark.parametrize(
        "body",
        [
            '{"targets": [{"symbol": "BTC/USD", "weight": -0.1}]}',
            '{"targets": [{"symbol": "BTC/USD", "weight": 1.01}]}',
            '{"targets": [{"symbol": "BTC/USD", "weight": 0.6}, {"symbol": "ETH/USD", '
            '"weight": 0.5}]}',
            '{"targets": [{"symbol": "BTC/USD", "weight": 0.2}, {"symbol": "btc-usd", '
            '"weight": 0.2}]}',
            '{"targets": []}',
            '{"targets": [{"symbol": "BTC/USD", "weight": 0.2}], "surprise": 1}',
        ],
        ids=["negative", "above-one", "sum-above-one", "duplicate", "empty", "unknown-field"],
    )
    async def test_bad_targets_are_refused(self, app: App, body: str) -> None:
        _assert_error(await rebalance(app, body), 422, "validation_failed")

    async def test_unknown_symbol_is_not_found(self, app: App) -> None:
        response = await rebalance(app, '{"targets": [{"symbol": "NOPE/USD", "weight": 0.1}]}')
        _assert_error(response, 404, "not_found")

    async def test_unknown_account_is_not_found(self, app: App) -> None:
        body = (
            '{"targets": [{"symbol": "BTC/USD", "weight": 0.1}], '
            f'"account_id": "{uuid.uuid4()}", "dry_run": true}}'
        )
        _assert_error(await rebalance(app, body), 404, "not_found")


class TestPerformance:
    async def test_curve_from_the_snapshots(self, app: App) -> None:
        await app.services.portfolio.snapshot_all()
        await app.services.portfolio.snapshot_all()
        response = await app.client.get(f"{BASE}/performance", params={"period": "1d"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["period"], body["snapshots"], D(body["max_drawdown"])) == ("1d", 2, D(0))
        assert [D(p["equity"]) for p in body["curve"]] == [D(10000), D(10000)]

    async def test_unknown_period_is_refused(self, app: App) -> None:
        response = await app.client.get(f"{BASE}/performance", params={"period": "2d"})
        assert response.status_code == 422
