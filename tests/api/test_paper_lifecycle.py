"""Cancel all, close positions, reset, fills and cursor pages over HTTP: the shapes, and
every bad input a 4xx with the reason."""

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
from tests.factories import create_account
from tests.services.paper_trading.test_service import tick

BASE = "/api/v1/trading/paper"
D = Decimal


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
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body


async def place(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await client.post(f"{BASE}/order", json={"symbol": "BTC/USD", **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def resting_buy(client: httpx.AsyncClient, price: str = "50") -> dict[str, Any]:
    return await place(client, side="buy", quantity="1", order_type="limit", price=price)


async def market_buy(client: httpx.AsyncClient, quantity: str = "1") -> dict[str, Any]:
    order = await place(client, side="buy", quantity=quantity)
    assert order["status"] == "filled", order
    return order


async def theirs(services: Services) -> str:
    """An account of another user."""
    return str((await create_account(services.database.database)).id)


async def portfolio(client: httpx.AsyncClient) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"{BASE}/portfolio")).json()
    return body


def balance(body: dict[str, Any], asset: str) -> tuple[Decimal, Decimal]:
    for row in body["balances"]:
        if row["asset"] == asset:
            return D(row["free"]), D(row["locked"])
    return D(0), D(0)


class TestCancelAll:
    async def test_returns_the_cancelled_orders(
        self, app_and_client: tuple[Services, httpx.AsyncClient]
    ) -> None:
        _, client = app_and_client
        first = await resting_buy(client, "50")
        second = await resting_buy(client, "60")
        response = await client.delete(f"{BASE}/orders")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["count"] == 2
        assert [o["id"] for o in body["items"]] == [first["id"], second["id"]]
        assert {o["status"] for o in body["items"]} == {"cancelled"}
        assert balance(await portfolio(client), "USD")[1] == 0
        again = (await client.delete(f"{BASE}/orders")).json()
        assert again == {"items": [], "count": 0}

    async def test_by_symbol_and_account(
        self, app_and_client: tuple[Services, httpx.AsyncClient]
    ) -> None:
        _, client = app_and_client
        order = await resting_buy(client)
        account_id = order["account_id"]
        none = await client.delete(f"{BASE}/orders", params={"symbol": "ETH-USD"})
        assert none.json()["count"] == 0
        some = await client.delete(
            f"{BASE}/orders", params={"symbol": "BTC/USD", "account_id": account_id}
        )
        assert [o["id"] for o in some.json()["items"]] == [order["id"]]

    async def test_bad_filters_are_4xx(
        self, app_and_client: tuple[Services, httpx.AsyncClient]
    ) -> None:
        services, client = app_and_client
        assert_error(
            await client.delete(f"{BASE}/orders", params={"symbol": "NOPE-USD"}), 404, "not_found"
        )
        assert_error(
            await client.delete(f"{BASE}/orders", params={"account_id": await theirs(services)}),
            404,
            "not_found",
        )
        assert_error(
            await client.delete(f"{BASE}/orders", params={"account_id": "nope"}),
            422,
            "validation_failed",
        )


class TestClosePosition:
    @pytest.mark.parametrize("path", ["BTC-USD", "BTC%2FUSD", "BTC/USD"])
    async def test_sells_the_position_named_either_way(
        self, app_and_client: tuple[Services, httpx.AsyncClient], path: str
    ) -> None:
        _, client = app_and_client
        await market_buy(client, "2")
        sell = await place(client, side="sell", quantity="1", order_type="limit", price="300")
        response = await client.delete(f"{BASE}/positions/{path}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["symbol"] == "BTC/USD"
        assert [o["id"] for o in body["cancelled_orders"]] == [sell["id"]]
        assert body["order"]["side"] == "sell"
        assert body["order"]["status"] == "filled"
        assert body["order"]["filled_quantity"] == "2"
        after = await portfolio(client)
        assert balance(after, "BTC") == (D(0), D(0))
        assert [p for p in after["positions"] if p["symbol"] == "BTC/USD"] == []

    async def test_percentage_and_quantity(
        self, app_and_client: tuple[Services, httpx.AsyncClient]
    ) -> None:
        _, client = app_and_client
        await market_buy(client, "1")
        half = await client.delete(f"{BASE}/positions/BTC-USD", params={"percentage": "50"})
        assert half.json()["order"]["filled_quantity"] == "0.5"
        some = await client.delete(f"{BASE}/positions/BTC-USD", params={"quantity": "0.2"})
        assert some.json()["order"]["filled_quantity"] == "0.2"
        assert balance(await portfolio(client), "BTC") == (D("0.3"), D(0))

    @pytest.mark.parametrize(
        ("params", "code", "reason"),
        [
            ({"quantity": "0.1", "percentage": "10"}, "validation_failed", "not both"),
            ({"percentage": "0"}, "validation_failed", "percentage"),
            ({"percentage": "100.5"}, "validation_failed", "percentage"),
            ({"quantity": "-1"}, "validation_failed", "quantity"),
            ({"quantity": "abc"}, "validation_failed", "quantity"),
            ({"quantity": "NaN"}, "validation_failed", "quantity"),
            ({"quantity": "5"}, "quantity_exceeds_position", "exceeds"),
            ({"quantity": "0.00005"}, "notional_below_minimum", "minimum"),
            ({"quantity": "0.000001"}, "quantity_below_step", "step"),
            ({"percentage": "1e-999999"}, "quantity_below_step", "step"),
        ],
    )
    async def test_bad_sizes_are_422_with_the_reason(
        self,
        app_and_client: tuple[Services, httpx.AsyncClient],
        params: dict[str, str],
        code: str,
        reason: str,
    ) -> None:
        _, client = app_and_client
        await market_buy(client, "1")
        body = assert_error(
            await client.delete(f"{BASE}/positions/BTC-USD", params=params), 422, code
        )
        assert reason in str(body["error"]), body
        assert balance(await portfolio(client), "BTC") == (D(1), D(0))  # nothing sold

    async def test_no_position_unknown_symbol_or_account_is_404(
        self, app_and_client: tuple[Services, httpx.AsyncClient]
    ) -> None:
        services, client = app_and_client
        assert_error(await client.delete(f"{BASE}/positions/BTC-USD"), 404, "not_found")
        assert_error(await client.delete(f"{BASE}/positions/NOPE-USD"), 404, "not_found")
        await market_buy(client, "1")
        assert_error(
            await client.delete(
                f"{BASE}/positions/BTC-USD", params={"account_id": await theirs(services)}
            ),
            404,
            "not_found",
        )

    async def test_close_all(self, app_and_client: tuple[Services, httpx.AsyncClient]) -> None:
        services, client = app_and_client
        await market_buy(client, "1")
        response = await client.delete(f"{BASE}/positions")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["count"] == 1
        assert [c["symbol"] for c in body["items"]] == ["BTC/USD"]
        assert body["skipped"] == []
        assert (await client.delete(f"{BASE}/positions")).json() == {
            "items": [],
            "count": 0,
            "skipped": [],
        }
        assert_error(
            await client.delete(f"{BASE}/positions", params={"account_id": await theirs(services)}),
            404,
            "not_found",
        )


class TestReset:
    async def test_resets_the_default_account(
        self, app_and_client: tuple[Services, httpx.AsyncClient]
    ) -> None:
        _, client = app_and_client
        await market_buy(client, "1")
        await resting_buy(client)
        response = await client.post(f"{BASE}/account/reset", json={"initial_balance": "2500.5"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["account"]["initial_balance"] == "2500.5"
        assert (body["cancelled_orders"], body["deleted_orders"], body["deleted_fills"]) == (
            1,
            2,
            1,
        )
        after = await portfolio(client)
        assert balance(after, "USD") == (D("2500.5"), D(0))
        assert balance(after, "BTC") == (D(0), D(0))
        assert after["positions"] == []
        assert (D(after["realized_pnl"]), D(after["fees"])) == (D(0), D(0))
        assert (await client.get(f"{BASE}/orders")).json()["items"] == []

    async def test_resets_a_named_account_without_a_body(
        self, app_and_client: tuple[Services, httpx.AsyncClient]
    ) -> None:
        _, client = app_and_client
        order = await market_buy(client, "1")
        initial = (await portfolio(client))["account"]["initial_balance"]
        response = await client.post(f"{BASE}/accounts/{order['account_id']}/reset")
        assert response.status_code == 200, response.text
        assert balance(await portfolio(client), "USD") == (D(initial), D(0))

    @pytest.mark.parametrize(
        "body",
        [
            {"initial_balance": "0"},
            {"initial_balance": "-5"},
            {"initial_balance": "1.0000000000000000001"},
            {"initial_balance": "1e30"},
            {"initial_balance": "lots"},
            {"cash": "100"},
        ],
    )
    async def test_a_bad_body_is_422(
        self, app_and_client: tuple[Services, httpx.AsyncClient], body: dict[str, str]
    ) -> None:
        _, client = app_and_client
        order = await market_buy(client, "1")
        assert_error(
            await client.post(f"{BASE}/account/reset", json=body), 422, "validation_failed"
        )
        assert balance(await portfolio(client), "BTC") == (D(1), D(0))
        assert (await client.get(f"{BASE}/orders/{order['id']}")).status_code == 200

    async def test_another_users_or_no_account_is_404(
        self, app_and_client: tuple[Services, httpx.AsyncClient]
    ) -> None:
        services, client = app_and_client
        other = await theirs(services)
        assert_error(await client.post(f"{BASE}/accounts/{other}/reset"), 404, "not_found")
        missing = "00000000-0000-0000-0000-000000000000"
        assert_error(await client.post(f"{BASE}/accounts/{missing}/reset"), 404, "not_found")
        assert_error(
            await client.post(f"{BASE}/accounts/not-a-uuid/reset"), 422, "validation_failed"
        )


async def walk(client: httpx.AsyncClient, path: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get(f"{BASE}/{path}", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor", "limit"}
        assert page["limit"] == limit
        items.extend(page["items"])
        await resting_buy(client, "40")  # a newer order between pages: never in this walk
        if page["next_cursor"] is None:
            return items
        cursor = page["next_cursor"]


class TestPages:
    async def test_orders_and_fills_walk_by_cursor(
        self, app_and_client: tuple[Services, httpx.AsyncClient]
    ) -> None:
        _, client = app_and_client
        bought = [await market_buy(client, "0.1") for _ in range(5)]
        orders = await walk(client, "orders", limit=2)
        assert [o["id"] for o in orders] == [o["id"] for o in reversed(bought)]
        fills = await walk(client, "fills", limit=2)
        assert [f["order_id"] for f in fills] == [o["id"] for o in reversed(bought)]
        assert set(fills[0]) == {
            "id",
            "order_id",
            "account_id",
            "symbol",
            "side",
            "quantity",
            "price",
            "fee",
            "fee_asset",
            "liquidity",
            "realized_pnl",
            "executed_at",
        }
        assert (fills[0]["price"], fills[0]["fee"]) == ("100", "0.02")

    async def test_fill_filters(self, app_and_client: tuple[Services, httpx.AsyncClient]) -> None:
        _, client = app_and_client
        bought = await market_buy(client, "1")
        await market_buy(client, "1")
        page = (await client.get(f"{BASE}/fills", params={"order_id": bought["id"]})).json()
        assert [f["id"] for f in page["items"]] == [bought["fills"][0]["id"]]
        sells = (await client.get(f"{BASE}/fills", params={"side": "sell"})).json()
        assert sells["items"] == []
        assert_error(
            await client.get(f"{BASE}/fills", params={"symbol": "NOPE-USD"}), 404, "not_found"
        )

    async def test_history_keeps_offset_and_total(
        self, app_and_client: tuple[Services, httpx.AsyncClient]
    ) -> None:
        _, client = app_and_client
        for _ in range(3):
            await market_buy(client, "0.1")
        page = (await client.get(f"{BASE}/history", params={"limit": 2, "offset": 1})).json()
        assert set(page) == {"items", "total", "limit", "offset"}
        assert (page["total"], page["limit"], page["offset"], len(page["items"])) == (3, 2, 1, 2)

    @pytest.mark.parametrize("path", ["orders", "fills"])
    @pytest.mark.parametrize(
        ("params", "code"),
        [
            ({"cursor": "not a cursor"}, "invalid_cursor"),
            ({"cursor": ""}, "invalid_cursor"),
            ({"cursor": "x" * 201}, "validation_failed"),
            ({"limit": "0"}, "validation_failed"),
            ({"limit": "501"}, "validation_failed"),
            ({"start": "yesterday"}, "validation_failed"),
        ],
    )
    async def test_bad_page_parameters_are_422(
        self,
        app_and_client: tuple[Services, httpx.AsyncClient],
        path: str,
        params: dict[str, str],
        code: str,
    ) -> None:
        _, client = app_and_client
        assert_error(await client.get(f"{BASE}/{path}", params=params), 422, code)

    @pytest.mark.parametrize("path", ["orders", "fills", "history"])
    @pytest.mark.parametrize(
        "params",
        [
            {"start": "2026-01-01T00:00:00"},  # no time zone
            {"start": "0001-01-01T00:00:00+14:00"},  # before year 1 in UTC
            {"end": "9999-12-31T23:59:59-14:00"},  # after 9999 in UTC
        ],
    )
    async def test_a_time_bound_without_a_utc_instant_is_422(
        self,
        app_and_client: tuple[Services, httpx.AsyncClient],
        path: str,
        params: dict[str, str],
    ) -> None:
        _, client = app_and_client
        body = assert_error(
            await client.get(f"{BASE}/{path}", params=params), 422, "validation_failed"
        )
        assert ("start" if "start" in params else "end") in str(body["error"])

    async def test_a_cursor_of_the_other_list_is_422_with_the_reason(
        self, app_and_client: tuple[Services, httpx.AsyncClient]
    ) -> None:
        _, client = app_and_client
        await market_buy(client, "0.1")
        await market_buy(client, "0.1")
        cursor = (await client.get(f"{BASE}/orders", params={"limit": 1})).json()["next_cursor"]
        assert cursor is not None
        body = assert_error(
            await client.get(f"{BASE}/fills", params={"cursor": cursor}), 422, "invalid_cursor"
        )
        assert "orders list" in body["error"]["details"]["reason"]
